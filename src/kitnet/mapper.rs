//! Phase 1 of KitNET: which features go into which autoencoder.
//!
//! The reference accumulates incremental correlation statistics, turns them
//! into a correlation distance matrix, clusters it with SciPy's single
//! linkage and cuts the dendrogram top-down until every cluster has at most
//! `m` features. Every step here is written to give the *same* clusters, in
//! the same order, as SciPy 1.x: the order of the clusters is the order of
//! the autoencoders, and the order inside a cluster is the order of that
//! autoencoder's inputs, so both change the scores. With one-hot or
//! duplicated columns many distances are exactly equal, and then the
//! tie-breaking of Prim's scan (first index wins), the stable sort of the
//! merge heights and the union-find relabelling decide the map; they are
//! reproduced literally.

use serde::{Deserialize, Serialize};

use super::{KitNetError, Mode};

/// Incremental correlation statistics of the reference `corClust`.
///
/// Only the strict upper triangle of the co-residual matrix is kept: it is
/// symmetric bit for bit (`r_i * r_j == r_j * r_i`), and the clustering only
/// reads the upper triangle, in SciPy's condensed (row-major) order.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct CorrelationStats {
    n: usize,
    count: u64,
    /// Running sum of each feature.
    sum: Vec<f64>,
    /// Running sum of squared residuals (`c_rs` in the reference).
    sum_sq_res: Vec<f64>,
    /// Condensed upper triangle of the co-residual sums (`C`).
    co_res: Vec<f64>,
    #[serde(skip)]
    res: Vec<f64>,
}

impl CorrelationStats {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            count: 0,
            sum: vec![0.0; n],
            sum_sq_res: vec![0.0; n],
            co_res: vec![0.0; n * n.saturating_sub(1) / 2],
            res: vec![0.0; n],
        }
    }

    pub(crate) fn n(&self) -> usize {
        self.n
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.n;
        if self.sum.len() != n
            || self.sum_sq_res.len() != n
            || self.co_res.len() != n * n.saturating_sub(1) / 2
        {
            return Err("correlation statistics have inconsistent sizes".into());
        }
        Ok(())
    }

    /// One record. `x.len()` is checked by the caller.
    pub(crate) fn update(&mut self, x: &[f64]) {
        let n = self.n;
        if self.res.len() != n {
            self.res = vec![0.0; n];
        }
        self.count += 1;
        let count = self.count as f64;
        // The residual uses the mean *including* x, as the reference does.
        for (((s, r), q), &xi) in self
            .sum
            .iter_mut()
            .zip(self.res.iter_mut())
            .zip(self.sum_sq_res.iter_mut())
            .zip(x)
        {
            *s += xi;
            *r = xi - *s / count;
            *q += *r * *r;
        }
        let mut off = 0;
        for i in 0..n.saturating_sub(1) {
            let ri = self.res[i];
            let len = n - i - 1;
            let row = &mut self.co_res[off..off + len];
            for (c, &rj) in row.iter_mut().zip(&self.res[i + 1..]) {
                *c += ri * rj;
            }
            off += len;
        }
    }

    /// Condensed correlation distances `1 - C_ij / (s_i s_j)`, clipped at 0,
    /// with the reference's `1e-100` guard for a zero denominator (so a
    /// constant feature is at distance 1 from everything).
    ///
    /// A non-finite distance (only possible if the sums overflowed) is an
    /// error in reference mode, as SciPy's `linkage` refuses it; product mode
    /// treats that pair as uncorrelated (distance 1).
    pub(crate) fn distances(&self, mode: Mode) -> Result<Vec<f64>, KitNetError> {
        let n = self.n;
        let s: Vec<f64> = self.sum_sq_res.iter().map(|v| v.sqrt()).collect();
        let mut d = Vec::with_capacity(self.co_res.len());
        let mut k = 0;
        for i in 0..n {
            for j in i + 1..n {
                let mut p = s[i] * s[j];
                if p == 0.0 {
                    p = 1e-100;
                }
                let mut v = 1.0 - self.co_res[k] / p;
                if v < 0.0 {
                    v = 0.0;
                }
                if !v.is_finite() {
                    match mode {
                        Mode::Reference => return Err(KitNetError::NonFiniteDistance { i, j }),
                        Mode::Product => v = 1.0,
                    }
                }
                d.push(v);
                k += 1;
            }
        }
        Ok(d)
    }
}

/// Index of pair (i, j), i < j, in SciPy's condensed distance vector.
fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    debug_assert!(i < j && j < n);
    n * i - i * (i + 1) / 2 + (j - i - 1)
}

/// One merge of the single-linkage dendrogram: two node labels (leaves are
/// `0..n`, merge `k` creates label `n + k`), with `left < right`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Merge {
    pub(crate) left: usize,
    pub(crate) right: usize,
    pub(crate) dist: f64,
}

/// SciPy's `linkage(y, method='single')`: Prim's minimum spanning tree in
/// SciPy's scan order, a stable sort of the edges by height, then the
/// union-find relabelling (`_hierarchy.label`).
pub(crate) fn single_linkage(n: usize, dists: &[f64]) -> Vec<Merge> {
    if n < 2 {
        return Vec::new();
    }
    debug_assert_eq!(dists.len(), n * (n - 1) / 2);
    // mst_single_linkage
    let mut merged = vec![false; n];
    let mut dmin = vec![f64::INFINITY; n];
    let mut edges: Vec<(usize, usize, f64)> = Vec::with_capacity(n - 1);
    let mut x = 0usize;
    let mut y = 0usize;
    for _ in 0..n - 1 {
        let mut best = f64::INFINITY;
        merged[x] = true;
        for i in 0..n {
            if merged[i] {
                continue;
            }
            let dist = if x < i {
                dists[condensed_index(n, x, i)]
            } else {
                dists[condensed_index(n, i, x)]
            };
            // Written as SciPy writes it (`if D[i] > dist`), which also keeps
            // its behaviour for NaN.
            if dmin[i] > dist {
                dmin[i] = dist;
            }
            if dmin[i] < best {
                y = i;
                best = dmin[i];
            }
        }
        edges.push((x, y, best));
        x = y;
    }
    // Stable sort by height (NumPy's mergesort); the distances are finite.
    edges.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));

    // LinkageUnionFind
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    let mut next_label = n;
    let find = |parent: &mut Vec<usize>, mut v: usize| -> usize {
        let mut root = v;
        while parent[root] != root {
            root = parent[root];
        }
        while parent[v] != root {
            let p = parent[v];
            parent[v] = root;
            v = p;
        }
        root
    };
    edges
        .into_iter()
        .map(|(a, b, dist)| {
            let ra = find(&mut parent, a);
            let rb = find(&mut parent, b);
            let (left, right) = if ra < rb { (ra, rb) } else { (rb, ra) };
            parent[ra] = next_label;
            parent[rb] = next_label;
            next_label += 1;
            Merge { left, right, dist }
        })
        .collect()
}

/// SciPy's `to_tree` followed by KitNET's `__breakClust__`: walk down from
/// the root, and every node with at most `max_size` leaves becomes a cluster
/// listing its leaves in pre-order (left subtree first). Iterative, so a very
/// unbalanced dendrogram of many features cannot overflow the stack.
pub(crate) fn split_dendrogram(n: usize, merges: &[Merge], max_size: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let max_size = max_size.clamp(1, n);
    let children = |node: usize| -> Option<(usize, usize)> {
        if node < n {
            None
        } else {
            let m = &merges[node - n];
            Some((m.left, m.right))
        }
    };
    // Leaf counts of every node, bottom-up (children always have smaller labels).
    let mut count = vec![1usize; 2 * n - 1];
    for (k, m) in merges.iter().enumerate() {
        count[n + k] = count[m.left] + count[m.right];
    }
    let root = 2 * n - 2;
    let mut clusters = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if count[node] <= max_size {
            let mut leaves = Vec::with_capacity(count[node]);
            let mut walk = vec![node];
            while let Some(v) = walk.pop() {
                match children(v) {
                    None => leaves.push(v),
                    Some((l, r)) => {
                        walk.push(r);
                        walk.push(l);
                    }
                }
            }
            clusters.push(leaves);
        } else if let Some((l, r)) = children(node) {
            stack.push(r);
            stack.push(l);
        }
    }
    clusters
}

/// The whole of `corClust.cluster(m)`.
pub(crate) fn feature_map(
    stats: &CorrelationStats,
    max_size: usize,
    mode: Mode,
) -> Result<Vec<Vec<usize>>, KitNetError> {
    let d = stats.distances(mode)?;
    let merges = single_linkage(stats.n, &d);
    Ok(split_dendrogram(stats.n, &merges, max_size))
}

/// [`feature_map`] within groups: features of different groups never share
/// an autoencoder (product mode keeps a table's context columns apart from
/// its per-record ones, so neither dilutes the other's reconstruction
/// error). Groups are taken in order of first appearance; one group is
/// exactly [`feature_map`].
pub(crate) fn feature_map_grouped(
    stats: &CorrelationStats,
    max_size: usize,
    mode: Mode,
    groups: &[u8],
) -> Result<Vec<Vec<usize>>, KitNetError> {
    let n = stats.n;
    let mut order: Vec<u8> = Vec::new();
    for g in groups.iter().take(n) {
        if !order.contains(g) {
            order.push(*g);
        }
    }
    if groups.len() != n || order.len() < 2 {
        return feature_map(stats, max_size, mode);
    }
    let d = stats.distances(mode)?;
    let mut map = Vec::new();
    for g in order {
        let members: Vec<usize> = (0..n).filter(|&i| groups[i] == g).collect();
        let m = members.len();
        let mut sub = Vec::with_capacity(m * m.saturating_sub(1) / 2);
        for (a, &i) in members.iter().enumerate() {
            for &j in &members[a + 1..] {
                sub.push(d[condensed_index(n, i, j)]);
            }
        }
        let merges = single_linkage(m, &sub);
        map.extend(
            split_dendrogram(m, &merges, max_size)
                .into_iter()
                .map(|c| c.into_iter().map(|k| members[k]).collect::<Vec<_>>()),
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_never_share_a_cluster_and_one_group_is_the_plain_map() {
        let mut stats = CorrelationStats::new(6);
        for k in 0..50u32 {
            let t = f64::from(k);
            // Features 0 and 3 move together, as do 1 and 4.
            stats.update(&[
                t,
                (t * 0.7).sin(),
                t % 3.0,
                2.0 * t + 1.0,
                (t * 0.7).sin() * 3.0,
                1.0,
            ]);
        }
        let plain = feature_map(&stats, 3, Mode::Product).unwrap();
        assert_eq!(
            feature_map_grouped(&stats, 3, Mode::Product, &[0; 6]).unwrap(),
            plain
        );
        let groups = [0, 0, 0, 1, 1, 1];
        let grouped = feature_map_grouped(&stats, 3, Mode::Product, &groups).unwrap();
        for c in &grouped {
            assert!(c.iter().all(|&i| groups[i] == groups[c[0]]), "{grouped:?}");
        }
        let mut all: Vec<usize> = grouped.concat();
        all.sort_unstable();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn condensed_index_is_row_major_upper_triangle() {
        let n = 5;
        let mut k = 0;
        for i in 0..n {
            for j in i + 1..n {
                assert_eq!(condensed_index(n, i, j), k);
                k += 1;
            }
        }
    }

    #[test]
    fn single_linkage_matches_scipy_on_a_small_example() {
        // scipy.cluster.hierarchy.linkage([1, 4, 2, 3, 5, 0.5], 'single')
        // for 4 points: [[2, 3, 0.5, 2], [0, 1, 1, 2], [4, 5, 2, 4]].
        let z = single_linkage(4, &[1.0, 4.0, 2.0, 3.0, 5.0, 0.5]);
        let got: Vec<(usize, usize, f64)> = z.iter().map(|m| (m.left, m.right, m.dist)).collect();
        assert_eq!(got, vec![(2, 3, 0.5), (0, 1, 1.0), (4, 5, 2.0)]);
        assert_eq!(split_dendrogram(4, &z, 2), vec![vec![2, 3], vec![0, 1]]);
    }

    #[test]
    fn all_equal_distances_follow_prims_first_index_rule() {
        // Every distance 1: Prim chains 0-1-2-3, the merges nest left to
        // right, and pre-order lists the oldest leaves first.
        let n = 4;
        let z = single_linkage(n, &[1.0; 6]);
        let got: Vec<(usize, usize)> = z.iter().map(|m| (m.left, m.right)).collect();
        assert_eq!(got, vec![(0, 1), (2, 4), (3, 5)]);
        assert_eq!(split_dendrogram(n, &z, 4), vec![vec![3, 2, 0, 1]]);
        assert_eq!(
            split_dendrogram(n, &z, 1),
            vec![vec![3], vec![2], vec![0], vec![1]]
        );
    }

    #[test]
    fn one_feature_is_one_cluster() {
        let stats = CorrelationStats::new(1);
        assert_eq!(
            feature_map(&stats, 3, Mode::Reference).unwrap(),
            vec![vec![0]]
        );
    }

    #[test]
    fn constant_features_are_at_distance_one() {
        let mut stats = CorrelationStats::new(3);
        for i in 0..10 {
            let v = i as f64;
            stats.update(&[v, 2.0 * v + 1.0, 7.0]);
        }
        let d = stats.distances(Mode::Reference).unwrap();
        assert!(d[0].abs() < 1e-12, "perfectly correlated: {}", d[0]);
        assert_eq!(d[1], 1.0);
        assert_eq!(d[2], 1.0);
    }
}
