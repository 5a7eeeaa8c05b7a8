//! Compressed texts: the one home of the compression crate (LZ4, fast both ways). The daemon
//! keeps some texts it reads rarely and that repeat themselves a great deal: the texts of its
//! own chains in the cached kernel state (`ruleset::packed`) and a load's policy files until
//! they are saved as the last good set (`daemon::last_good`).

use std::io;

/// `text`, compressed, with its length (all `expand` needs).
pub fn squeeze(text: &str) -> Box<[u8]> {
    lz4_flex::compress_prepend_size(text.as_bytes()).into_boxed_slice()
}

/// The text `squeeze` made `bytes` of; an error for any other bytes.
pub fn expand(bytes: &[u8]) -> io::Result<String> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let raw = lz4_flex::decompress_size_prepended(bytes).map_err(|e| invalid(e.to_string()))?;
    String::from_utf8(raw).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_back_whole_and_other_bytes_are_refused() {
        for text in [
            "",
            "a",
            &"kind: GlobalNetworkPolicy\n".repeat(1000),
            "é\u{1}\n",
        ] {
            let squeezed = squeeze(text);
            assert_eq!(expand(&squeezed).unwrap(), text);
        }
        let long = "spec:\n  selector: all()\n".repeat(1000);
        assert!(squeeze(&long).len() < long.len() / 10, "repeats compress");
        assert!(expand(&[5, 0, 0, 0, 0xff]).is_err());
        // Valid LZ4 of bytes that are not UTF-8.
        let not_text = lz4_flex::compress_prepend_size(&[0xff, 0xfe]);
        assert!(expand(&not_text).is_err());
    }
}
