//! A linearizability checker for one register under reads and compare-and-swap, in the
//! style of Jepsen's knossos (`wgl`) and porcupine: given what clients saw (each call
//! with when it was sent and when its answer came), is there one order of the calls,
//! each taking effect at an instant between its invoke and its completion, in which
//! every answer is what a single register would have given? That is what "a write
//! acknowledged is never lost, and a read never goes back in time" means for a key
//! behind several API servers and an etcd cluster losing members, and it catches what
//! ad-hoc checks miss (a stale read through one server, a lost update, a value from
//! nowhere) without the test having to know how the writes were ordered.
//!
//! The search is Wing and Gong's, with Lowe's memoization: walk the calls in time order,
//! linearizing any call that was pending before the first answer not yet explained, and
//! backtrack when an answer comes that no order explains; a configuration (which calls
//! are linearized, and the register's value) already explored is never explored again.
//! Calls whose answer never came ([`Outcome::Unknown`]) may take effect at any instant
//! after their invoke, or never.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

/// What a client asked, with what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A read that observed `value`.
    Read { value: u64 },
    /// Sets the register to `to` if it holds `from`.
    Cas { from: u64, to: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Took effect: the read saw its value, the swap happened.
    Ok,
    /// Certainly did not take effect (a CAS refused with a conflict, a request never
    /// sent); it tells nothing the checker uses, so it is left out.
    Failed,
    /// Sent, no answer: it may take effect at any time after its invoke, or never.
    Unknown,
}

/// One call. Times are logical (any unit, a common origin); an answer at the same time
/// as another call's invoke counts as concurrent with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// The client that made the call; only for reports.
    pub process: u32,
    pub call: Call,
    pub invoke: u64,
    /// When the answer came; for [`Outcome::Unknown`], when the client gave up waiting
    /// (the call may still take effect after that).
    pub complete: u64,
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        match self.call {
            Call::Read { value } => write!(f, "p{} read {value}", self.process)?,
            Call::Cas { from, to } => write!(f, "p{} cas {from}->{to}", self.process)?,
        }
        write!(f, " {outcome} [{}, {}]", self.invoke, self.complete)
    }
}

/// No order of the calls explains what the clients saw.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "not linearizable: no order explains {op} (register could hold {states:?} there, after {linearized} calls); calls around it: {}",
    list(neighbours)
)]
pub struct NotLinearizable {
    /// The call whose answer the search got furthest before failing to explain.
    pub op: Op,
    /// Values the register could hold when that answer came.
    pub states: Vec<u64>,
    /// How many calls were placed before it, in the deepest attempt.
    pub linearized: usize,
    /// The calls invoked just before and after it.
    pub neighbours: Vec<Op>,
}

fn list(ops: &[Op]) -> String {
    let ops: Vec<String> = ops.iter().map(Op::to_string).collect();
    ops.join("; ")
}

/// Checks that `ops` are a linearizable history of one register that starts at
/// `initial`. Panics if an op completes before it is invoked.
pub fn check(initial: u64, ops: &[Op]) -> Result<(), NotLinearizable> {
    let kept: Vec<Op> = ops.iter().copied().filter(informative).collect();
    for op in &kept {
        assert!(
            op.outcome == Outcome::Unknown || op.invoke <= op.complete,
            "{op} completes before it is invoked"
        );
    }
    let mut search = Search::new(&kept, initial);
    match search.run() {
        Ok(()) => Ok(()),
        Err(stuck) => Err(report(&kept, stuck)),
    }
}

/// Failed calls changed nothing; a read never answered saw nothing.
fn informative(op: &Op) -> bool {
    match op.outcome {
        Outcome::Ok => true,
        Outcome::Failed => false,
        Outcome::Unknown => matches!(op.call, Call::Cas { .. }),
    }
}

/// The register's answer to `call` in `state`: its next state, or None if the call's
/// answer could not have been given there.
fn step(state: u64, call: Call) -> Option<u64> {
    match call {
        Call::Read { value } => (state == value).then_some(state),
        Call::Cas { from, to } => (state == from).then_some(to),
    }
}

/// Where the search got furthest: deepest stack, the answer it could not explain there
/// and the register values it tried.
struct Stuck {
    depth: usize,
    op: usize,
    states: BTreeSet<u64>,
}

fn report(ops: &[Op], stuck: Stuck) -> NotLinearizable {
    let op = ops[stuck.op];
    let mut by_invoke: Vec<&Op> = ops.iter().collect();
    by_invoke.sort_by_key(|o| (o.invoke, o.complete));
    let at = by_invoke.iter().position(|o| **o == op).unwrap_or(0);
    let neighbours = by_invoke[at.saturating_sub(4)..(at + 5).min(by_invoke.len())]
        .iter()
        .filter(|o| ***o != op)
        .map(|o| **o)
        .collect();
    NotLinearizable {
        op,
        states: stuck.states.into_iter().collect(),
        linearized: stuck.depth,
        neighbours,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

/// The WGL search over a doubly linked list of call and return entries in time order.
/// Entry 0 is the list's head (a sentinel; the list is circular), entries 1.. the calls
/// and returns.
struct Search<'a> {
    ops: &'a [Op],
    kind: Vec<Kind>,
    /// The op of each entry.
    op_of: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_entry: Vec<usize>,
    /// Unknown calls have no return: nothing waits for them.
    return_entry: Vec<Option<usize>>,
    linearized: Vec<u64>,
    state: u64,
    seen: HashSet<(Vec<u64>, u64)>,
    /// Linearized ops, with the state before each.
    stack: Vec<(usize, u64)>,
    stuck: Option<Stuck>,
}

const HEAD: usize = 0;

impl<'a> Search<'a> {
    fn new(ops: &'a [Op], initial: u64) -> Self {
        let mut entries: Vec<(u64, Kind, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke, Kind::Call, i));
            if op.outcome == Outcome::Ok {
                entries.push((op.complete, Kind::Return, i));
            }
        }
        // At equal times calls go first: the ops overlap.
        entries.sort_by_key(|&(t, k, i)| (t, k == Kind::Return, i));
        let n = entries.len() + 1;
        let mut s = Search {
            ops,
            kind: vec![Kind::Call; n],
            op_of: vec![usize::MAX; n],
            next: (0..n).map(|i| (i + 1) % n).collect(),
            prev: (0..n).map(|i| (i + n - 1) % n).collect(),
            call_entry: vec![0; ops.len()],
            return_entry: vec![None; ops.len()],
            linearized: vec![0; ops.len().div_ceil(64)],
            state: initial,
            seen: HashSet::new(),
            stack: Vec::new(),
            stuck: None,
        };
        for (e, &(_, kind, op)) in entries.iter().enumerate() {
            let e = e + 1;
            s.kind[e] = kind;
            s.op_of[e] = op;
            match kind {
                Kind::Call => s.call_entry[op] = e,
                Kind::Return => s.return_entry[op] = Some(e),
            }
        }
        s
    }

    fn run(&mut self) -> Result<(), Stuck> {
        let mut entry = self.next[HEAD];
        // Past every return: all answered calls are placed, the unknown ones left never
        // took effect.
        while entry != HEAD {
            let (op, kind) = (self.op_of[entry], self.kind[entry]);
            entry = match kind {
                Kind::Call if self.try_linearize(op) => self.next[HEAD],
                Kind::Call => self.next[entry],
                Kind::Return => {
                    self.note_stuck(op);
                    let (undone, state) = self.stack.pop().ok_or_else(|| self.take_stuck())?;
                    self.state = state;
                    self.flip(undone);
                    self.unlift(undone);
                    self.next[self.call_entry[undone]]
                }
            };
        }
        Ok(())
    }

    /// Places `op` next, if the register allows it and that configuration is new.
    fn try_linearize(&mut self, op: usize) -> bool {
        let Some(next) = step(self.state, self.ops[op].call) else {
            return false;
        };
        self.flip(op);
        if !self.seen.insert((self.linearized.clone(), next)) {
            self.flip(op);
            return false;
        }
        self.stack.push((op, self.state));
        self.state = next;
        self.lift(op);
        true
    }

    fn flip(&mut self, op: usize) {
        self.linearized[op / 64] ^= 1 << (op % 64);
    }

    fn note_stuck(&mut self, op: usize) {
        let depth = self.stack.len();
        match &mut self.stuck {
            Some(s) if s.depth > depth || (s.depth == depth && s.op != op) => {}
            Some(s) if s.depth == depth => {
                s.states.insert(self.state);
            }
            _ => {
                self.stuck = Some(Stuck {
                    depth,
                    op,
                    states: BTreeSet::from([self.state]),
                })
            }
        }
    }

    fn take_stuck(&mut self) -> Stuck {
        self.stuck.take().expect("a return was reached")
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_entry[op]);
        if let Some(r) = self.return_entry[op] {
            self.unlink(r);
        }
    }

    /// Undoes `lift` (in reverse order, as dancing links must).
    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.return_entry[op] {
            self.relink(r);
        }
        self.relink(self.call_entry[op]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u32, call: Call, invoke: u64, complete: u64, outcome: Outcome) -> Op {
        Op {
            process,
            call,
            invoke,
            complete,
            outcome,
        }
    }

    fn read(p: u32, value: u64, invoke: u64, complete: u64) -> Op {
        op(p, Call::Read { value }, invoke, complete, Outcome::Ok)
    }

    fn cas(p: u32, from: u64, invoke: u64, complete: u64, outcome: Outcome) -> Op {
        let call = Call::Cas { from, to: from + 1 };
        op(p, call, invoke, complete, outcome)
    }

    #[test]
    fn concurrent_interleavings_pass() {
        let h = [
            cas(0, 0, 0, 10, Outcome::Ok),
            read(1, 0, 1, 5),
            read(2, 1, 2, 12),
            cas(1, 0, 6, 15, Outcome::Failed),
            read(1, 1, 16, 17),
            cas(1, 1, 18, 30, Outcome::Ok),
            // Concurrent with the swap: either value.
            read(2, 1, 19, 20),
            read(3, 2, 21, 22),
        ];
        check(0, &h).unwrap();
        check(0, &[]).unwrap();
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let h = [cas(0, 0, 0, 5, Outcome::Ok), read(1, 0, 6, 8)];
        let err = check(0, &h).unwrap_err();
        assert_eq!(err.op, h[1]);
        assert_eq!(err.states, [1]);
        assert_eq!(err.neighbours, [h[0]]);
        let msg = err.to_string();
        assert!(msg.contains("p1 read 0 ok [6, 8]"), "{msg}");
        assert!(msg.contains("p0 cas 0->1 ok [0, 5]"), "{msg}");
    }

    #[test]
    fn two_swaps_from_the_same_value_both_succeeding_fail() {
        let h = [
            read(0, 0, 0, 1),
            read(1, 0, 0, 1),
            cas(0, 0, 2, 5, Outcome::Ok),
            cas(1, 0, 3, 6, Outcome::Ok),
        ];
        let err = check(0, &h).unwrap_err();
        assert!(matches!(err.op.call, Call::Cas { from: 0, .. }), "{err}");
    }

    #[test]
    fn a_value_never_written_fails() {
        let h = [cas(0, 0, 0, 5, Outcome::Ok), read(1, 7, 1, 8)];
        assert_eq!(check(0, &h).unwrap_err().op, h[1]);
    }

    #[test]
    fn an_unknown_swap_may_take_effect_late_or_never() {
        // A later read sees its value: it happened, after the client gave up.
        let h = [
            cas(0, 0, 0, 2, Outcome::Unknown),
            read(1, 0, 10, 11),
            read(1, 1, 20, 21),
        ];
        check(0, &h).unwrap();
        // Nothing sees it: it never happened.
        check(0, &h[..2]).unwrap();
        // And after it the register moves on.
        let h = [
            cas(0, 0, 0, 2, Outcome::Unknown),
            read(1, 1, 5, 6),
            cas(1, 1, 7, 8, Outcome::Ok),
            read(2, 2, 9, 10),
        ];
        check(0, &h).unwrap();
    }

    #[test]
    fn an_unknown_swap_cannot_take_effect_before_it_was_sent() {
        let h = [read(1, 1, 0, 1), cas(0, 0, 5, 6, Outcome::Unknown)];
        assert_eq!(check(0, &h).unwrap_err().op, h[0]);
    }

    #[test]
    fn failed_and_unanswered_reads_say_nothing() {
        let h = [
            cas(0, 0, 0, 1, Outcome::Failed),
            op(1, Call::Read { value: 9 }, 2, 3, Outcome::Failed),
            op(1, Call::Read { value: 9 }, 4, 5, Outcome::Unknown),
            read(2, 0, 6, 7),
        ];
        check(0, &h).unwrap();
    }

    #[test]
    fn real_time_order_is_kept() {
        // Two writes in sequence, then a read of the first.
        let h = [
            cas(0, 0, 0, 1, Outcome::Ok),
            cas(0, 1, 2, 3, Outcome::Ok),
            read(1, 1, 4, 5),
        ];
        assert_eq!(check(0, &h).unwrap_err().op, h[2]);
        // A read that ended before the write began cannot see it...
        let h = [read(1, 1, 0, 1), cas(0, 0, 2, 3, Outcome::Ok)];
        assert!(check(0, &h).is_err());
        // ...one overlapping it may, and so may one ending as it begins.
        check(0, &[read(1, 1, 0, 3), cas(0, 0, 2, 4, Outcome::Ok)]).unwrap();
        check(0, &[read(1, 1, 0, 2), cas(0, 0, 2, 4, Outcome::Ok)]).unwrap();
    }

    /// splitmix64: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
    }

    /// One process's call in flight: invoked, then (maybe) taking effect, then answered.
    struct Pending {
        op: Op,
        applied: bool,
        /// Its answer is lost; and whether it takes effect at all.
        lost: Option<bool>,
    }

    /// A linearizable history of read-then-CAS increments by `procs` clients of one
    /// register, each call taking effect at a random instant within its interval; about
    /// one CAS in 40 loses its answer (and half of those never take effect).
    fn generate(seed: u64, procs: usize, len: usize) -> Vec<Op> {
        let mut rng = Rng(seed);
        let (mut reg, mut t, mut out) = (0u64, 0u64, Vec::new());
        let mut pending: Vec<Option<Pending>> = (0..procs).map(|_| None).collect();
        let mut last_read = vec![None::<u64>; procs];
        while out.len() < len {
            t += 1 + rng.next() % 3;
            let p = (rng.next() % procs as u64) as usize;
            match pending[p].take() {
                None => {
                    let call = match last_read[p] {
                        None => Call::Read { value: 0 },
                        Some(v) => Call::Cas { from: v, to: v + 1 },
                    };
                    let lost =
                        matches!(call, Call::Cas { .. } if rng.one_in(40)).then(|| rng.one_in(2));
                    let op = op(p as u32, call, t, 0, Outcome::Ok);
                    pending[p] = Some(Pending {
                        op,
                        applied: false,
                        lost,
                    });
                }
                Some(mut c) if !c.applied => {
                    apply(&mut c, &mut reg);
                    pending[p] = Some(c);
                }
                Some(mut c) => {
                    c.op.complete = t;
                    last_read[p] = match c.op.call {
                        Call::Read { value } => Some(value),
                        Call::Cas { .. } => None,
                    };
                    if c.lost.is_some() {
                        c.op.outcome = Outcome::Unknown;
                    }
                    out.push(c.op);
                }
            }
        }
        // Calls still in flight that took effect are answered now; the others are left
        // out, as if never sent.
        for c in pending.into_iter().flatten().filter(|c| c.applied) {
            out.push(Op {
                complete: t + 1,
                ..c.op
            });
        }
        out
    }

    fn apply(c: &mut Pending, reg: &mut u64) {
        c.applied = true;
        match &mut c.op.call {
            Call::Read { value } => *value = *reg,
            Call::Cas { .. } if c.lost == Some(false) => {}
            Call::Cas { from, to } if *from == *reg => *reg = *to,
            Call::Cas { .. } => c.op.outcome = Outcome::Failed,
        }
    }

    #[test]
    fn long_generated_histories_pass_and_a_stale_read_in_them_fails() {
        for seed in 1..=3 {
            let mut h = generate(seed, 6, 3000);
            let unknown = h.iter().filter(|o| o.outcome == Outcome::Unknown).count();
            assert!(unknown >= 12, "only {unknown} unknowns");
            let ok = |o: &Op| o.outcome == Outcome::Ok;
            let swaps = h
                .iter()
                .filter(|o| ok(o) && matches!(o.call, Call::Cas { .. }));
            assert!(swaps.count() > 300);
            check(0, &h).unwrap();
            // A late read that sees a value long overwritten.
            let late = h
                .iter()
                .rposition(|o| ok(o) && matches!(o.call, Call::Read { value } if value > 5))
                .unwrap();
            h[late].call = Call::Read { value: 2 };
            let err = check(0, &h).unwrap_err();
            assert_eq!(err.op, h[late], "{err}");
        }
    }
}
