//! Packet-mark bits hostfw owns, allocated from `iptablesMarkMask` the way Felix does (v3.30+):
//! accept, pass, drop, scratch0, scratch1, each the next lowest set bit of the mask. Pure.

/// The mark bits rules use to carry verdicts between chains and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Marks {
    /// A: a policy (or earlier table) allowed the packet.
    pub accept: u32,
    /// P: a policy passed the packet to the next tier.
    pub pass: u32,
    /// D: set right before the deny verdict of a Deny rule.
    pub drop: u32,
    /// S0: "all match blocks passed".
    pub scratch0: u32,
    /// S1: "this match block passed".
    pub scratch1: u32,
}

/// The configured mask has fewer than the five bits Felix needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iptablesMarkMask {mask:#x} has {bits} bit(s) set; at least 5 are needed (accept, pass, drop, scratch0, scratch1)")]
pub struct MarkError {
    pub mask: u32,
    pub bits: u32,
}

impl Marks {
    /// Hand out bits from `mask`, lowest first.
    pub fn allocate(mask: u32) -> Result<Marks, MarkError> {
        let mut remaining = mask;
        let mut next = || {
            if remaining == 0 {
                return None;
            }
            let bit = remaining & remaining.wrapping_neg();
            remaining &= !bit;
            Some(bit)
        };
        let err = MarkError {
            mask,
            bits: mask.count_ones(),
        };
        let accept = next().ok_or_else(|| err.clone())?;
        let pass = next().ok_or_else(|| err.clone())?;
        let drop = next().ok_or_else(|| err.clone())?;
        let scratch0 = next().ok_or_else(|| err.clone())?;
        let scratch1 = next().ok_or(err)?;
        Ok(Marks {
            accept,
            pass,
            drop,
            scratch0,
            scratch1,
        })
    }

    /// Bits cleared at chain entry (`allCalicoMarkBits`): A|P|S0|S1; the drop bit is never
    /// cleared because it is always set right before the rule that tests it.
    pub fn all(&self) -> u32 {
        self.accept | self.pass | self.scratch0 | self.scratch1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_gives_felix_values() {
        let m = Marks::allocate(0xffff_0000).unwrap();
        assert_eq!(m.accept, 0x10000);
        assert_eq!(m.pass, 0x20000);
        assert_eq!(m.drop, 0x40000);
        assert_eq!(m.scratch0, 0x80000);
        assert_eq!(m.scratch1, 0x100000);
        // `docs/felix-layout.md` "Marks": ALL = 0x1b0000, FORWARD clears ALL & ~A = 0x1a0000.
        assert_eq!(m.all(), 0x1b_0000);
        assert_eq!(m.all() & !m.accept, 0x1a_0000);
    }

    #[test]
    fn custom_sparse_mask() {
        let m = Marks::allocate(0x0000_f0f0).unwrap();
        assert_eq!(
            (m.accept, m.pass, m.drop, m.scratch0, m.scratch1),
            (0x10, 0x20, 0x40, 0x80, 0x1000)
        );
    }

    #[test]
    fn too_small_mask_is_an_error() {
        let e = Marks::allocate(0x0f00).unwrap_err();
        assert_eq!(e.bits, 4);
        assert!(Marks::allocate(0).is_err());
        assert!(Marks::allocate(0x1f).is_ok());
    }
}
