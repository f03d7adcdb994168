//! [`BudgetWindow`]: which day (or month) a moment belongs to, exactly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, Time};

/// How often the budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Every day.
    Daily,
    /// Every calendar month.
    Monthly,
}

/// When budgets reset: daily at UTC midnight by default, or at a shifted hour, or monthly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetWindow {
    period: Period,
    /// Seconds after UTC midnight at which the window turns (0..86 400).
    offset_secs: u32,
}

/// One window: `[start, end)` in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowId {
    /// The first second of the window.
    pub start: u64,
    /// The first second after it.
    pub end: u64,
}

impl WindowId {
    /// Time from `now` to the window's end.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Duration::from_secs(self.end.saturating_sub(now))
    }
}

impl Default for BudgetWindow {
    fn default() -> Self {
        Self::daily()
    }
}

impl BudgetWindow {
    /// Daily, turning at UTC midnight.
    pub const fn daily() -> Self {
        Self {
            period: Period::Daily,
            offset_secs: 0,
        }
    }

    /// Monthly, turning at UTC midnight on the first.
    pub const fn monthly() -> Self {
        Self {
            period: Period::Monthly,
            offset_secs: 0,
        }
    }

    /// Turns `offset` after UTC midnight instead (taken modulo a day): 8 h turns the window at
    /// 08:00 UTC, which is midnight for a team at UTC-8.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset_secs = (offset.as_secs() % 86_400) as u32;
        self
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The window `now` falls in.
    pub fn at(&self, now: SystemTime) -> WindowId {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let offset = u64::from(self.offset_secs);
        let shifted = secs.saturating_sub(offset);
        match self.period {
            Period::Daily => {
                let start = shifted / 86_400 * 86_400 + offset;
                WindowId {
                    start,
                    end: start + 86_400,
                }
            }
            Period::Monthly => {
                let Ok(moment) = OffsetDateTime::from_unix_timestamp(shifted as i64) else {
                    return WindowId {
                        start: 0,
                        end: u64::MAX,
                    };
                };
                let first = |year: i32, month: Month| {
                    Date::from_calendar_date(year, month, 1)
                        .map(|d| {
                            d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() as u64
                                + offset
                        })
                        .unwrap_or(u64::MAX)
                };
                let (year, month) = (moment.year(), moment.month());
                let next_year = if month == Month::December {
                    year + 1
                } else {
                    year
                };
                WindowId {
                    start: first(year, month),
                    end: first(next_year, month.next()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // 2026-11-25T00:00:00Z
    const DAY: u64 = 1_795_564_800;

    #[test]
    fn daily_turns_exactly_at_midnight() {
        let w = BudgetWindow::daily();
        assert_eq!(
            w.at(at(DAY - 1)),
            WindowId {
                start: DAY - 86_400,
                end: DAY
            }
        );
        assert_eq!(
            w.at(at(DAY)),
            WindowId {
                start: DAY,
                end: DAY + 86_400
            }
        );
        assert_eq!(w.at(at(DAY + 86_399)).start, DAY);
        assert_eq!(
            w.at(at(DAY + 60)).remaining(at(DAY + 60)),
            Duration::from_secs(86_340)
        );
    }

    #[test]
    fn offset_moves_the_turn() {
        let w = BudgetWindow::daily().with_offset(Duration::from_secs(8 * 3600));
        assert_eq!(w.at(at(DAY + 8 * 3600 - 1)).start, DAY - 86_400 + 8 * 3600);
        assert_eq!(w.at(at(DAY + 8 * 3600)).start, DAY + 8 * 3600);
    }

    #[test]
    fn monthly_follows_the_calendar() {
        let w = BudgetWindow::monthly();
        let nov = w.at(at(DAY));
        // 2026-11-01 and 2026-12-01.
        assert_eq!(
            nov,
            WindowId {
                start: 1_793_491_200,
                end: 1_796_083_200
            }
        );
        let dec = w.at(at(nov.end));
        assert_eq!(dec.start, nov.end);
        // December rolls into January of the next year.
        assert_eq!(w.at(at(dec.end)).start, dec.end);
        assert_eq!(dec.end - dec.start, 31 * 86_400);
    }
}
