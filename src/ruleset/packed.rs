//! One of our chains as a long-lived reconciler (the daemon) keeps it between reconciles: each
//! rule's hash and printed target, which is all a plan reads of a chain of ours, and the full
//! texts compressed, which only putting the chain back (a failed pass's rollback) reads. Pure.
//!
//! Why: the daemon keeps the kernel state it last saw or left, so an edit plans without reading
//! it again. Kept as text, that state was the daemon's largest resident part (about 240 bytes a
//! rule: the text, its hash and their allocations; 1.8 million rules at 10,000 policies). Packed,
//! a rule costs its 16-byte hash, a 2-byte target index and its share of the compressed texts
//! (the rules of one chain repeat each other's matches and comments, which compresses well).
//! A text is compressed without what is kept beside it anyway, its hash and its target part:
//! those are the random-looking part of a rule, and without them the thousands of jumps of an
//! endpoint chain compress to a few bytes each.

use super::hash::HASH_LEN;
use super::save::{LiveRule, RuleView};
use super::Name;
use std::collections::HashSet;
use std::sync::Arc;

/// Stands for a rule's hash in its packed text. No text holding it is packed, so every one in
/// a packed text is a hash left out.
const HASH_MARK: char = '\u{1}';

/// One copy of each target part among the chains packed together (one read, one replay): every
/// endpoint chain jumps to the same policy chains, so at 10,000 policies each of the thousands
/// of targets would otherwise be kept once per endpoint chain (~20 MB).
#[derive(Debug, Default)]
pub struct Targets(HashSet<Name>);

impl Targets {
    fn share(&mut self, part: &str) -> Name {
        if let Some(known) = self.0.get(part) {
            return known.clone();
        }
        let new: Name = part.into();
        self.0.insert(new.clone());
        new
    }
}

/// The rules of one chain of ours, packed (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Every rule's hash, concatenated (each is `HASH_LEN` ASCII bytes); shared with the plan's
    /// hashes of the chain when they are the same (`share_hashes`).
    hashes: Arc<str>,
    /// Each rule's index into `targets`.
    target_of: Box<[u16]>,
    /// The distinct target parts of the chain's rules (`target_part`), shared with the chains
    /// packed beside it (`Targets`); one word each, as an endpoint chain's jumps have as many
    /// distinct targets as policies.
    targets: Box<[Name]>,
    /// The rules' texts, one per line, LZ4-compressed with their length in front; each without
    /// its target part, and with one occurrence of its hash as `HASH_MARK`.
    texts: Box<[u8]>,
}

impl Packed {
    /// Pack `rules`, which must all carry a hash of the usual length; `None` when one does not
    /// (a chain holding such a rule stays as it is), when a text holds a line break (the
    /// separator; a save line never does) or `HASH_MARK`, or when the chain has more distinct
    /// targets than an index holds. Its target parts are taken from `shared` where known.
    pub fn of<'a>(
        rules: impl Iterator<Item = (Option<&'a str>, &'a str)>,
        shared: &mut Targets,
    ) -> Option<Packed> {
        let mut hashes = String::new();
        let mut target_of = Vec::new();
        let mut targets: Vec<&str> = Vec::new();
        let mut index: std::collections::HashMap<&str, u16> = std::collections::HashMap::new();
        let mut texts = String::new();
        for (hash, text) in rules {
            // Two single-character searches: each is a fast scan, a search for either is not.
            if text.contains('\n') || text.contains(HASH_MARK) {
                return None;
            }
            let hash = hash.filter(|h| h.len() == HASH_LEN && h.is_ascii())?;
            hashes.push_str(hash);
            let target = target_part(text);
            let i = match index.get(target) {
                Some(i) => *i,
                None => {
                    let i = u16::try_from(targets.len()).ok()?;
                    targets.push(target);
                    index.insert(target, i);
                    i
                }
            };
            // A separator before every text but the first, empty texts included.
            if !target_of.is_empty() {
                texts.push('\n');
            }
            target_of.push(i);
            let rest = &text[..text.len() - target.len()];
            match hash_at(rest, hash) {
                Some(at) => {
                    texts.push_str(&rest[..at]);
                    texts.push(HASH_MARK);
                    texts.push_str(&rest[at + hash.len()..]);
                }
                None => texts.push_str(rest),
            }
        }
        Some(Packed {
            hashes: hashes.into(),
            target_of: target_of.into_boxed_slice(),
            targets: targets.into_iter().map(|t| shared.share(t)).collect(),
            texts: crate::compress::squeeze(&texts),
        })
    }

    pub fn len(&self) -> usize {
        self.target_of.len()
    }

    /// Keep `hashes` instead of this chain's own copy when they are the same hashes (the
    /// chain's rules as the last plan hashed them, `memo::ChainHashes::text`, or as the cache
    /// held them): in sync, the kernel's chains of ours hold exactly the hashes the plan
    /// computed, and at 10,000 policies each copy is ~25 MB.
    pub fn share_hashes(&mut self, hashes: &Arc<str>) {
        if !Arc::ptr_eq(&self.hashes, hashes) && self.hashes == *hashes {
            self.hashes = Arc::clone(hashes);
        }
    }

    /// Every rule's hash, concatenated.
    pub fn hashes(&self) -> &Arc<str> {
        &self.hashes
    }

    pub fn is_empty(&self) -> bool {
        self.target_of.is_empty()
    }

    /// Each rule's hash and target part, in chain order.
    pub fn views(&self) -> impl Iterator<Item = RuleView<'_>> {
        self.target_of.iter().enumerate().map(|(i, t)| RuleView {
            hash: self.hashes.get(i * HASH_LEN..(i + 1) * HASH_LEN),
            text: &self.targets[usize::from(*t)],
        })
    }

    /// The rules with their full texts, as they were packed (counters are not kept: they are
    /// zero in the state a reconcile plans from).
    pub fn unpack(&self) -> Vec<LiveRule> {
        // The bytes were compressed here from a `String`; anything else is a bug in this file.
        let texts = crate::compress::expand(&self.texts)
            .expect("packed texts decompress: they were compressed by Packed::of");
        self.views()
            .zip(texts.split('\n'))
            .map(|(view, rest)| {
                let hash = view.hash.unwrap_or_default();
                let mut text = String::with_capacity(rest.len() + hash.len() + view.text.len());
                match rest.split_once(HASH_MARK) {
                    Some((before, after)) => {
                        text.push_str(before);
                        text.push_str(hash);
                        text.push_str(after);
                    }
                    None => text.push_str(rest),
                }
                text.push_str(view.text);
                LiveRule {
                    hash: view.hash.map(str::to_string),
                    text,
                    ..LiveRule::default()
                }
            })
            .collect()
    }
}

/// Where `hash` occurs in `text`, looking first where Felix's renderer (and ours) puts it, the
/// rule's first match: a search of every text costs a read of 10,000 policies ~0.1 s.
fn hash_at(text: &str, hash: &str) -> Option<usize> {
    const FIRST: &str = "-m comment --comment \"cali:";
    let first =
        text.starts_with(FIRST) && text.get(FIRST.len()..FIRST.len() + hash.len()) == Some(hash);
    if first {
        return Some(FIRST.len());
    }
    text.find(hash)
}

/// The part of a printed rule from its target on: `-j X …`/`-g X …` (the last jump or goto
/// followed by a word), or empty when it has none. The plan reads a rule's target from this
/// part (`plan::printed_target`), so a packed chain, which keeps only this part, reads the same.
pub fn target_part(text: &str) -> &str {
    // Read from the end: the kernel prints the target last, and this runs for every rule of
    // every plan. The last word cannot be a jump that names a target.
    let mut words = text.split_whitespace().rev();
    if words.next().is_none() {
        return "";
    }
    for word in words {
        if matches!(word, "-j" | "--jump" | "-g" | "--goto") {
            return &text[word.as_ptr() as usize - text.as_ptr() as usize..];
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "Cz_u1IQiXIMmKD4c";
    const H2: &str = "aaaabbbbccccdddd";

    fn pack(rules: &[(&str, &str)]) -> Option<Packed> {
        Packed::of(
            rules.iter().map(|(h, t)| (Some(*h), *t)),
            &mut Targets::default(),
        )
    }

    #[test]
    fn a_packed_chain_gives_back_every_text_hash_and_target_in_order() {
        let rules = [
            (
                H1,
                r#"-m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-pi-web"#,
            ),
            (
                H2,
                r#"-m comment --comment "cali:aaaabbbbccccdddd" -m mark --mark 0x10000/0x10000 -j RETURN"#,
            ),
            (
                H1,
                r#"-p tcp -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j MARK --set-xmark 0x10000/0x10000"#,
            ),
        ];
        let packed = pack(&rules).expect("packs");
        assert_eq!(packed.len(), 3);
        let views: Vec<(Option<&str>, &str)> = packed.views().map(|v| (v.hash, v.text)).collect();
        assert_eq!(
            views,
            [
                (Some(H1), "-j cali-pi-web"),
                (Some(H2), "-j RETURN"),
                (Some(H1), "-j MARK --set-xmark 0x10000/0x10000"),
            ]
        );
        let back: Vec<(Option<String>, String)> = packed
            .unpack()
            .into_iter()
            .map(|r| (r.hash, r.text))
            .collect();
        let want: Vec<(Option<String>, String)> = rules
            .iter()
            .map(|(h, t)| (Some(h.to_string()), t.to_string()))
            .collect();
        assert_eq!(back, want);
    }

    /// The hash and the target are left out of the compressed text and put back: wherever the
    /// hash occurs (twice, not at all, inside the target part), the text comes back the same.
    #[test]
    fn texts_come_back_whole_wherever_their_hash_and_target_are() {
        let rules = [
            (
                H1,
                r#"-m comment --comment "cali:Cz_u1IQiXIMmKD4c" -m comment --comment "Cz_u1IQiXIMmKD4c" -j DROP"#,
            ),
            (H2, "-p tcp -j ACCEPT"),
            (H1, "-j cali-Cz_u1IQiXIMmKD4c"),
            (H2, "aaaabbbbccccdddd"),
            (H1, "-m mark --mark 0x0/0x20000 "),
        ];
        let packed = pack(&rules).expect("packs");
        let back: Vec<String> = packed.unpack().into_iter().map(|r| r.text).collect();
        assert_eq!(back, rules.map(|(_, t)| t));
        // What is compressed holds neither the hashes nor the targets.
        let kept = crate::compress::expand(&packed.texts).expect("decompresses");
        assert_eq!(
            kept.split('\n').collect::<Vec<_>>(),
            [
                "-m comment --comment \"cali:\u{1}\" -m comment --comment \"Cz_u1IQiXIMmKD4c\" ",
                "-p tcp ",
                "",
                "\u{1}",
                "-m mark --mark 0x0/0x20000 ",
            ]
        );
        assert!(pack(&[(H1, "-m comment --comment \"\u{1}\" -j DROP")]).is_none());
    }

    /// Chains packed together keep one copy of a target they share; packed apart, each has its
    /// own, and either way each reads its own rules.
    #[test]
    fn chains_packed_together_share_their_targets() {
        let jump = r#"-m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-pi-web"#;
        let other = r#"-m comment --comment "cali:aaaabbbbccccdddd" -j cali-pi-web"#;
        let mut shared = Targets::default();
        let a = Packed::of([(Some(H1), jump)].into_iter(), &mut shared).expect("packs");
        let b = Packed::of([(Some(H2), other)].into_iter(), &mut shared).expect("packs");
        assert!(std::ptr::eq(&*a.targets[0], &*b.targets[0]));
        let apart = pack(&[(H1, jump)]).expect("packs");
        assert!(!std::ptr::eq(&*a.targets[0], &*apart.targets[0]));
        assert_eq!(a, apart);
        assert_eq!(b.unpack()[0].text, other);
    }

    #[test]
    fn equal_hashes_are_shared_and_others_kept() {
        let rules = [(H1, "-j DROP"), (H2, "-j ACCEPT")];
        let mut packed = pack(&rules).expect("packs");
        let same: Arc<str> = format!("{H1}{H2}").into();
        let other: Arc<str> = format!("{H2}{H1}").into();
        packed.share_hashes(&other);
        assert!(!Arc::ptr_eq(packed.hashes(), &other));
        packed.share_hashes(&same);
        assert!(Arc::ptr_eq(packed.hashes(), &same));
        assert_eq!(packed, pack(&rules).expect("packs"));
    }

    #[test]
    fn empty_texts_keep_their_place() {
        let rules = [(H1, ""), (H2, "-j DROP"), (H1, "")];
        let back: Vec<String> = pack(&rules)
            .expect("packs")
            .unpack()
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(back, ["", "-j DROP", ""]);
    }

    #[test]
    fn an_empty_chain_packs_to_nothing_and_unpacks_to_nothing() {
        let packed = pack(&[]).expect("packs");
        assert!(packed.is_empty());
        assert!(packed.unpack().is_empty());
    }

    #[test]
    fn a_rule_without_a_usual_hash_keeps_the_chain_unpacked() {
        assert!(Packed::of([(None, "-j ACCEPT")].into_iter(), &mut Targets::default()).is_none());
        assert!(pack(&[("short", "-j ACCEPT")]).is_none());
        assert!(pack(&[("éééééééé", "-j ACCEPT")]).is_none());
        assert!(pack(&[(H1, "-j ACCEPT"), (H2, "-p tcp\n-j DROP")]).is_none());
    }

    #[test]
    fn the_target_part_starts_at_the_last_jump_that_names_a_target() {
        for (text, part) in [
            ("-p tcp -j ACCEPT", "-j ACCEPT"),
            ("-j MARK --set-xmark 0x1/0x1", "-j MARK --set-xmark 0x1/0x1"),
            (
                r#"-m comment --comment "x -j y" -g cali-fw-eth0"#,
                "-g cali-fw-eth0",
            ),
            ("-p tcp --jump cali-x", "--jump cali-x"),
            ("-p tcp", ""),
            ("-j ACCEPT -j", "-j ACCEPT -j"),
            ("", ""),
        ] {
            assert_eq!(target_part(text), part, "{text}");
        }
    }
}
