//! The calls waiting for a turn, and which of them takes a turn when it comes.
//!
//! The limiter hands out turns at the pace, one interval apart; the line only decides who
//! leaves at each. Newest first ([`ThrottleConfig::newest_first`](crate::ThrottleConfig)),
//! the holder of a turn that has come gives it to the call that joined the line last and
//! takes that call's later turn, unless
//! - a call has waited `overdue` or longer: the one that has waited longest goes first;
//! - the later turn would come after the holder's deadline: the holder goes.
//!
//! The moments calls leave are those of arrival order; only who leaves at each changes. At
//! saturation a line in arrival order makes every call wait the line's length; newest
//! first, most calls leave at once and a few wait up to about `overdue`: the same mean
//! (Little's law), a median close to no wait at all.
//!
//! Only calls that wait take the line's lock (joining, at each turn they hold, leaving): a
//! call whose turn is now never sees it. The lock is never held across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// One waiting call.
#[derive(Debug)]
pub(crate) struct Place {
    /// When it joined the line (nanoseconds since the limiter's epoch): the first time, if a
    /// slower pace sent it back to take a new turn.
    pub(crate) joined: u64,
    /// Its deadline on the same clock (`u64::MAX`: none).
    pub(crate) deadline: u64,
    /// The pace's generation its turn was given under.
    pub(crate) generation: u64,
    /// A hedge (`Speculative`): never given a turn as the newest, only once overdue.
    pub(crate) speculative: bool,
    /// The turn it holds now: changed, under the line's lock, when it gives its turn away or
    /// is given an earlier one.
    turn: AtomicU64,
    /// Woken when it is given a turn earlier than the one it sleeps until.
    pub(crate) moved: Notify,
}

impl Place {
    pub(crate) fn new(
        joined: u64,
        deadline: u64,
        generation: u64,
        turn: u64,
        speculative: bool,
    ) -> Self {
        Self {
            joined,
            deadline,
            generation,
            speculative,
            turn: AtomicU64::new(turn),
            moved: Notify::new(),
        }
    }

    /// The turn it holds now.
    pub(crate) fn turn(&self) -> u64 {
        self.turn.load(Ordering::Acquire)
    }
}

/// The waiting calls of one limiter, newest first with a bound on the wait.
#[derive(Debug, Default)]
pub(crate) struct Line {
    places: Mutex<Vec<Arc<Place>>>,
}

impl Line {
    fn places(&self) -> MutexGuard<'_, Vec<Arc<Place>>> {
        // The lock guards a list that every operation leaves whole: a panic elsewhere while
        // it was held cannot have broken it.
        self.places
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `place` waits for its turn.
    pub(crate) fn join(&self, place: Arc<Place>) {
        self.places().push(place);
    }

    /// The turn of `me` has come (`now`): whether it goes. When it does not, it has given
    /// the turn to another call and holds that call's later turn.
    pub(crate) fn turn_came(&self, me: &Arc<Place>, now: u64, overdue: u64) -> bool {
        let places = self.places();
        let Some(other) = choose(&places, me, now, overdue) else {
            return true;
        };
        let later = other.turn.swap(me.turn(), Ordering::AcqRel);
        me.turn.store(later, Ordering::Release);
        other.moved.notify_one();
        false
    }

    /// `me` leaves the line, its turn taken or given back by the caller.
    pub(crate) fn leave(&self, me: &Arc<Place>) {
        remove(&mut self.places(), me);
    }

    /// `me` leaves before it went (its caller gave up): the turn to give back to the
    /// limiter, if any. Its turn is not lost: one that has already come goes to the call the
    /// line would have chosen; one still to come goes to the call holding the last turn, if
    /// later, so no hole is left in the line. The later turn is the one given back.
    pub(crate) fn leave_early(&self, me: &Arc<Place>, now: u64, overdue: u64) -> Option<u64> {
        let mut places = self.places();
        remove(&mut places, me);
        let turn = me.turn();
        let heir = if turn > now {
            places
                .iter()
                .filter(|p| p.generation == me.generation && p.turn() > turn)
                .max_by_key(|p| p.turn())
        } else {
            choose_heir(&places, me.generation, now, overdue)
        };
        let Some(heir) = heir else {
            return (turn > now).then_some(turn);
        };
        let later = heir.turn.swap(turn, Ordering::AcqRel);
        heir.moved.notify_one();
        Some(later)
    }

    /// How many calls wait in the line.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.places().len()
    }
}

/// Takes `me` out of `places`.
fn remove(places: &mut Vec<Arc<Place>>, me: &Arc<Place>) {
    if let Some(at) = places.iter().position(|p| Arc::ptr_eq(p, me)) {
        places.swap_remove(at);
    }
}

/// Whether `place` has waited `overdue` at `now`.
fn is_overdue(place: &Place, now: u64, overdue: u64) -> bool {
    now.saturating_sub(place.joined) >= overdue
}

/// Among `waiting`, the two a turn may go to: the longest-waiting call that has waited
/// `overdue`, and the newest call that is not a hedge.
fn candidates<'a>(
    waiting: impl Iterator<Item = &'a Arc<Place>> + Clone,
    now: u64,
    overdue: u64,
) -> (Option<&'a Arc<Place>>, Option<&'a Arc<Place>>) {
    let oldest = waiting
        .clone()
        .filter(|p| is_overdue(p, now, overdue))
        .min_by_key(|p| p.joined);
    let newest = waiting.filter(|p| !p.speculative).max_by_key(|p| p.joined);
    (oldest, newest)
}

/// The call a turn that has come goes to instead of `me`, if not `me`: the longest-waiting
/// call that has waited `overdue`, or else the newest that is not a hedge, if it joined
/// after `me`; either only if its turn does not come after `me`'s deadline. Only calls of
/// `me`'s generation whose turn is still to come are chosen.
fn choose<'a>(
    places: &'a [Arc<Place>],
    me: &Arc<Place>,
    now: u64,
    overdue: u64,
) -> Option<&'a Arc<Place>> {
    let others = places
        .iter()
        .filter(|p| !Arc::ptr_eq(p, me) && p.generation == me.generation && p.turn() > now);
    let (oldest, newest) = candidates(others, now, overdue);
    if let Some(oldest) = oldest {
        let before_me = is_overdue(me, now, overdue) && me.joined <= oldest.joined;
        return (!before_me && oldest.turn() <= me.deadline).then_some(oldest);
    }
    if is_overdue(me, now, overdue) {
        return None;
    }
    let newest = newest?;
    (newest.joined > me.joined && newest.turn() <= me.deadline).then_some(newest)
}

/// The call a turn left by a call that gave up goes to: the longest-waiting overdue call,
/// or else the newest that is not a hedge (any call may take a turn earlier than its own).
fn choose_heir(
    places: &[Arc<Place>],
    generation: u64,
    now: u64,
    overdue: u64,
) -> Option<&Arc<Place>> {
    let waiting = places
        .iter()
        .filter(|p| p.generation == generation && p.turn() > now);
    let (oldest, newest) = candidates(waiting, now, overdue);
    oldest.or(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn place(joined: u64, turn: u64) -> Arc<Place> {
        Arc::new(Place::new(joined, u64::MAX, 0, turn, false))
    }

    #[test]
    fn a_turn_goes_to_the_newest_and_its_holder_takes_the_later_turn() {
        let line = Line::default();
        let (b, c, d) = (
            place(SEC, 2 * SEC),
            place(SEC + 1, 3 * SEC),
            place(SEC + 2, 4 * SEC),
        );
        for p in [&b, &c, &d] {
            line.join(Arc::clone(p));
        }
        assert!(!line.turn_came(&b, 2 * SEC, 10 * SEC));
        assert_eq!((b.turn(), d.turn()), (4 * SEC, 2 * SEC));
        // `c`'s turn comes: `b` is older, `d`'s turn has come: `c` goes.
        assert!(line.turn_came(&c, 3 * SEC, 10 * SEC));
        line.leave(&c);
        line.leave(&d);
        assert!(line.turn_came(&b, 4 * SEC, 10 * SEC), "alone, it goes");
        line.leave(&b);
        assert_eq!(line.len(), 0);
    }

    #[test]
    fn a_call_that_waited_overdue_goes_before_the_newest() {
        let line = Line::default();
        let (b, c, d) = (
            place(0, 5 * SEC),
            place(SEC, 3 * SEC),
            place(2 * SEC, 8 * SEC),
        );
        for p in [&b, &c, &d] {
            line.join(Arc::clone(p));
        }
        // At 3 s `b` has waited 3 s, overdue at 3: it takes `c`'s turn.
        assert!(!line.turn_came(&c, 3 * SEC, 3 * SEC));
        assert_eq!((b.turn(), c.turn()), (3 * SEC, 5 * SEC));
        // The holder itself overdue and the oldest: it goes.
        let e = place(0, 7 * SEC);
        line.join(Arc::clone(&e));
        line.leave(&b);
        assert!(!line.turn_came(&c, 5 * SEC, 3 * SEC), "`e` is older");
        assert_eq!(e.turn(), 5 * SEC);
        line.leave(&e);
        assert!(
            line.turn_came(&c, 7 * SEC, 3 * SEC),
            "`c` overdue, and it joined before `d`"
        );
    }

    #[test]
    fn a_holder_keeps_a_turn_it_could_not_take_back_before_its_deadline() {
        let line = Line::default();
        let b = Arc::new(Place::new(0, 3 * SEC, 0, SEC, false));
        let c = place(SEC / 2, 4 * SEC);
        line.join(Arc::clone(&b));
        line.join(Arc::clone(&c));
        assert!(line.turn_came(&b, SEC, 10 * SEC));
        assert_eq!((b.turn(), c.turn()), (SEC, 4 * SEC));
    }

    #[test]
    fn a_turn_left_by_a_call_that_gave_up_goes_to_the_next_chosen() {
        let line = Line::default();
        let (b, c, d) = (place(0, SEC), place(1, 2 * SEC), place(2, 3 * SEC));
        for p in [&b, &c, &d] {
            line.join(Arc::clone(p));
        }
        // Leaving before its turn: the last turn's holder takes it, and the last is given
        // back.
        assert_eq!(line.leave_early(&c, SEC / 2, 10 * SEC), Some(3 * SEC));
        assert_eq!(d.turn(), 2 * SEC);
        // Leaving once its turn has come: the newest takes it, its own turn is given back.
        assert_eq!(line.leave_early(&b, SEC, 10 * SEC), Some(2 * SEC));
        assert_eq!(d.turn(), SEC);
        // With no one to take it, a turn that has come is spent; one to come goes back.
        assert_eq!(line.leave_early(&d, SEC, 10 * SEC), None);
        let e = place(3, 4 * SEC);
        line.join(Arc::clone(&e));
        assert_eq!(line.leave_early(&e, SEC, 10 * SEC), Some(4 * SEC));
        assert_eq!(line.len(), 0);
    }

    #[test]
    fn a_hedge_is_not_given_a_turn_as_the_newest_only_once_overdue() {
        // Newer than `b`, but a hedge: `b` keeps its turn.
        let line = Line::default();
        let b = place(0, SEC);
        let hedge = Arc::new(Place::new(SEC / 2, u64::MAX, 0, 2 * SEC, true));
        line.join(Arc::clone(&b));
        line.join(Arc::clone(&hedge));
        assert!(line.turn_came(&b, SEC, 10 * SEC));
        assert_eq!(hedge.turn(), 2 * SEC);
        // A hedge that has waited `overdue` goes first like any call.
        let line = Line::default();
        let hedge = Arc::new(Place::new(SEC / 10, u64::MAX, 0, 2 * SEC, true));
        let c = place(9 * SEC / 10, SEC);
        line.join(Arc::clone(&hedge));
        line.join(Arc::clone(&c));
        assert!(!line.turn_came(&c, SEC, SEC / 2));
        assert_eq!((hedge.turn(), c.turn()), (SEC, 2 * SEC));
    }

    #[test]
    fn calls_of_another_generation_are_not_chosen() {
        let line = Line::default();
        let b = place(0, SEC);
        let stale = Arc::new(Place::new(SEC / 2, u64::MAX, 1, 5 * SEC, false));
        line.join(Arc::clone(&b));
        line.join(Arc::clone(&stale));
        assert!(line.turn_came(&b, SEC, 10 * SEC));
    }
}
