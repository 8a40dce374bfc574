//! Short strings built without `format!`.
//!
//! A translation of a large mesh writes a few names per cluster and a dozen
//! per virtual host (cluster names, FQDNs and their short forms, domains with
//! ports). `format!` goes through the formatting machinery and grows its
//! string as it goes, which cost more than the copying itself: a third of the
//! route thread's instructions. These build each name in one allocation of
//! the right size.

/// `parts` one after another.
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// A number in decimal, on the stack.
pub struct Decimal {
    digits: [u8; 5],
    start: usize,
}

impl Decimal {
    pub fn new(mut n: u16) -> Decimal {
        let mut digits = [b'0'; 5];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return Decimal { digits, start };
            }
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).expect("ASCII digits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_joins_read_as_format_writes_them() {
        for n in [0, 7, 10, 80, 443, 9080, 15001, 65535] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
        assert_eq!(concat(&["a", "", "bc", ":", "80"]), "abc:80");
        assert_eq!(concat(&[]), "");
        assert_eq!(concat(&["x", "y"]).capacity(), 2);
    }
}
