//! "Did you mean …?" for unknown config keys: closest known key by edit distance.

/// The known key an unknown `key` was probably meant to be, if any.
///
/// Matches when the keys differ only by case or `-` vs `_`, or when the
/// (optimal string alignment) edit distance is at most 2 and smaller than the
/// known key's length, so `x` never "means" `oci`. Ties go to the first
/// candidate in `known`, which lists keys in documentation order.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let norm = normalize(key);
    if let Some(exact) = known.iter().find(|k| normalize(k) == norm) {
        return Some(exact);
    }
    let mut best: Option<(usize, &'k str)> = None;
    for k in known {
        let d = distance(&norm, &normalize(k));
        if d <= 2 && d < k.chars().count() && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

fn normalize(key: &str) -> Vec<char> {
    key.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of adjacent characters each cost 1 (`chekc` is one edit from `check`).
fn distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &[&str] = &[
        "timeout",
        "check_interval",
        "consul_address",
        "max_restart_attempts",
        "oci",
        "nodes",
    ];

    #[test]
    fn typos_find_the_intended_key() {
        assert_eq!(suggest("chek_interval", TOP), Some("check_interval"));
        assert_eq!(suggest("chekc_interval", TOP), Some("check_interval"));
        assert_eq!(suggest("timout", TOP), Some("timeout"));
        assert_eq!(suggest("node", TOP), Some("nodes"));
        assert_eq!(suggest("consul_adress", TOP), Some("consul_address"));
    }

    #[test]
    fn case_and_dashes_are_forgiven_whatever_the_distance() {
        assert_eq!(suggest("Check-Interval", TOP), Some("check_interval"));
        assert_eq!(
            suggest("MAX-RESTART-ATTEMPTS", TOP),
            Some("max_restart_attempts")
        );
        assert_eq!(suggest("OCI", TOP), Some("oci"));
    }

    #[test]
    fn unrelated_keys_get_no_suggestion() {
        assert_eq!(suggest("region", TOP), None);
        assert_eq!(suggest("x", TOP), None);
        assert_eq!(suggest("interval", TOP), None);
        assert_eq!(suggest("", TOP), None);
    }

    #[test]
    fn distance_counts_edits() {
        let d = |a: &str, b: &str| {
            distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", "abc"), 0);
        assert_eq!(d("abc", "acb"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
    }
}
