//! Lookups on a profile read through the library's own types ([`super::profile_at`]): the
//! typed counterparts of `stack_totals`, `frame_names` and `top_names`.
use lockscope_profile::profile::Profile;

/// (stack index, waits, total wait ns) of each stack, hottest first.
pub fn totals(p: &Profile) -> Vec<(usize, u64, u64)> {
    let mut acc: std::collections::BTreeMap<usize, (u64, u64)> = Default::default();
    for r in &p.waits {
        if let Some(s) = r.stack {
            let e = acc.entry(s).or_default();
            e.0 += r.count;
            e.1 += r.total_ns;
        }
    }
    let mut v: Vec<_> = acc.into_iter().map(|(s, (c, t))| (s, c, t)).collect();
    v.sort_by_key(|&(_, _, t)| std::cmp::Reverse(t));
    v
}

/// Every symbol name on stack `stack`, innermost first (inlined frames included).
pub fn names(p: &Profile, stack: usize) -> Vec<String> {
    p.stacks[stack]
        .frames
        .iter()
        .flat_map(|f| f.syms.iter())
        .map(|s| s.name.clone())
        .collect()
}

/// Frame names of the hottest stack.
pub fn hottest_names(p: &Profile) -> Vec<String> {
    let tops = totals(p);
    assert!(!tops.is_empty(), "no waits recorded");
    names(p, tops[0].0)
}
