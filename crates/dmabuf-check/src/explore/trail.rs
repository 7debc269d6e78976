//! The path a run follows: the choices of a prefix to replay, then first options, and
//! (in a snapshot search) the checkpoints the path leaves behind.

use std::cell::Cell;
use std::rc::Rc;

use super::Move;
use super::snapshot::Snap;

/// One choice point passed on a path.
pub(super) struct Point {
    pub(super) chosen: u8,
    pub(super) mv: Option<Move>,
}

/// A choice of a replayed prefix that its point had no option for: (its index, the
/// choice, the options there were).
pub(super) type BadChoice = (usize, u8, usize);

/// The path being followed: a prefix of choices to replay, then first options.
#[derive(Default)]
pub(super) struct Trail {
    /// The index of the point `prefix[0]` is for: a run resumed from a checkpoint at point
    /// `base` replays from there, not from the start.
    pub(super) base: usize,
    pub(super) prefix: Vec<u8>,
    pub(super) taken: Vec<Point>,
    /// The indices of the points taken that have an option left, in order: the last is
    /// where the next path turns off this one.
    pub(super) open: Vec<usize>,
    /// The line of the step being executed.
    pub(super) line: Rc<Cell<u32>>,
    /// The first choice of the prefix that the path had no such option for.
    pub(super) bad: Option<BadChoice>,
    /// In a snapshot search: this process's place in the chain of checkpoints.
    pub(super) snap: Option<Snap>,
}

impl Trail {
    /// The choice at the next point, which has `n` options; `describe` says what choice
    /// `c > 0` makes happen.
    pub(super) fn next(&mut self, n: usize, describe: impl Fn(usize) -> String) -> usize {
        let n = n.min(u8::MAX as usize);
        let i = self.taken.len();
        if let Some(snap) = &self.snap {
            snap.count_point();
        }
        let given = i.checked_sub(self.base).and_then(|k| self.prefix.get(k)).copied();
        if let Some(c) = given
            && c as usize >= n
            && self.bad.is_none()
        {
            self.bad = Some((i, c, n));
        }
        let mut c = given.map_or(0, |c| (c as usize).min(n - 1));
        if c + 1 < n && self.snap.is_some() {
            c = self.checkpoint(i, n, c);
        }
        let mv = (c != 0).then(|| Move { line: self.line.get(), what: describe(c) });
        if c + 1 < n {
            self.open.push(i);
        }
        self.taken.push(Point { chosen: c as u8, mv });
        c
    }

    /// Whether the run is still replaying its prefix (its states were visited before).
    pub(super) fn replaying(&self) -> bool {
        self.taken.len() < self.base + self.prefix.len()
    }

    /// The choice made at every point, in order: what a replay file stores.
    pub(super) fn choices(&self) -> Vec<u8> {
        self.taken.iter().map(|p| p.chosen).collect()
    }

    /// The hardware's moves on the path (the choices that were not "nothing").
    pub(super) fn moves(&self) -> usize {
        self.taken.iter().filter(|p| p.mv.is_some()).count()
    }

    /// The next path's prefix: this one's choices up to the last point with an option
    /// left, which takes its next option; from point `from` on. `None` when every point's
    /// options are taken.
    pub(super) fn next_prefix(&self, from: usize) -> Option<Vec<u8>> {
        let &k = self.open.last()?;
        let from = from.min(k);
        let mut p: Vec<u8> = self.taken[from..k].iter().map(|p| p.chosen).collect();
        p.push(self.taken[k].chosen + 1);
        Some(p)
    }

    /// A checkpoint at point `i` (options `n`, choice `c` of them): in a snapshot search
    /// the process may fork here; see [`super::snapshot`]. Returns the choice this process
    /// goes on with.
    fn checkpoint(&mut self, i: usize, n: usize, c: usize) -> usize {
        let target = self.replaying().then(|| self.base + self.prefix.len() - 1);
        let snap = self.snap.as_mut().expect("checked by the caller");
        if !snap.wants_checkpoint(i, target) {
            return c;
        }
        match snap.checkpoint(i, n, target.is_none()) {
            // The first branch, or a later one this process was handed: replay it.
            None => c,
            Some(prefix) => {
                self.base = i;
                self.prefix = prefix;
                self.prefix[0] as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trail_replays_its_prefix_then_takes_first_options() {
        let mut t = Trail { prefix: vec![1, 2], ..Trail::default() };
        assert!(t.replaying());
        assert_eq!(t.next(2, |_| "a".into()), 1);
        assert_eq!(t.next(2, |_| "b".into()), 1, "clamped to the options there are");
        assert!(!t.replaying());
        assert_eq!(t.next(3, |_| "c".into()), 0);
        let moves: Vec<_> = t.taken.iter().filter_map(|p| p.mv.as_ref().map(|m| m.what.clone())).collect();
        assert_eq!(moves, vec!["a", "b"]);
        assert_eq!(t.bad, Some((1, 2, 2)));
    }

    #[test]
    fn the_next_prefix_turns_at_the_last_point_with_an_option_left() {
        let mut t = Trail::default();
        t.next(3, |_| String::new());
        t.next(1, |_| String::new());
        t.next(2, |_| String::new());
        assert_eq!(t.next_prefix(0), Some(vec![0, 0, 1]));
        assert_eq!(t.next_prefix(1), Some(vec![0, 1]), "from a checkpoint at point 1");
        let mut u = Trail { prefix: vec![2, 0, 1], ..Trail::default() };
        for n in [3, 1, 2] {
            u.next(n, |_| String::new());
        }
        assert_eq!(u.next_prefix(0), None, "every option taken");
        let mut v = Trail {
            base: 2,
            prefix: vec![1],
            taken: (0..2).map(|_| Point { chosen: 0, mv: None }).collect(),
            ..Trail::default()
        };
        assert!(v.replaying());
        assert_eq!(v.next(3, |_| "x".into()), 1, "a prefix from point 2 on");
        assert_eq!(v.next_prefix(0), Some(vec![0, 0, 2]));
    }
}
