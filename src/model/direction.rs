//! `Direction`: the one vocabulary for "which way relative to the host" shared by the model
//! (a policy's `ingress`/`egress` rule lists), render (inbound/outbound chains), explain and
//! status. Owns both spellings: the API's `ingress`/`egress` and the `inbound`/`outbound` that
//! `show` and `status` print. Pure.

/// Traffic towards the host (ingress, inbound chains) or away from it (egress, outbound chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Both directions, ingress first (the order render builds chains in).
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The API spelling (`ingress` / `egress`), as in a policy's rule lists.
    pub fn api_name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The word `show` and `status` print (`inbound` / `outbound`).
    pub fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "inbound",
            Direction::Egress => "outbound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Direction;

    #[test]
    fn both_spellings() {
        let words: Vec<_> = Direction::ALL
            .iter()
            .map(|d| (d.api_name(), d.label()))
            .collect();
        assert_eq!(words, [("ingress", "inbound"), ("egress", "outbound")]);
    }
}
