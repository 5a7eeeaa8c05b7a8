//! Golden-file comparison shared by the golden tests (`mod golden_compare;`): a readable line
//! diff and the compare-or-regenerate step. Holds no test data and runs nothing.

use std::fs;
use std::path::Path;

/// A line diff (longest common subsequence) printed with `-` expected / `+` actual markers and
/// a little context, so a failing golden test says exactly what changed.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(3);
        let hi = (k + 3).min(ops.len() - 1);
        ops[lo..=hi].iter().any(|(m, _)| *m != ' ')
    };
    let mut out = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (mark, line)) in ops.iter().enumerate() {
        if near_change(k) {
            out.push_str(&format!("{mark}{line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("@@\n");
            skipped = true;
        }
    }
    out
}

/// Compare `actual` with the file, or rewrite the file under UPDATE_GOLDEN=1. Returns a failure
/// message instead of panicking so every scenario is reported in one run.
pub fn check(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::write(path, actual).expect("write golden");
        return None;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{} differs (UPDATE_GOLDEN=1 regenerates it):\n{}",
            path.display(),
            line_diff(&expected, actual)
        )
    })
}
