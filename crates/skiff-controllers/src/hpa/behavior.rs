//! From what the metrics propose to what the HPA sets, as upstream normalizes it.
//! Without `behavior`: the highest recommendation of the last five minutes on the way
//! down, at most `max(2 × current, 4)` on the way up, within min and max. With it: each
//! direction's stabilization window (the lowest recent recommendation going up, the
//! highest going down), then its policies' rate limits over their periods (Pods or
//! Percent, `selectPolicy` Max, Min or Disabled). Pure: the recommendations and scale
//! events are kept per HPA by the caller in a [`History`].

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i64,
    pub period_seconds: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub window_seconds: i64,
    pub select: Select,
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Rules {
    /// Kubernetes' defaults for scaling up: at once, by 4 pods or 100 % per 15 s,
    /// whichever is more.
    pub fn default_up() -> Rules {
        Rules {
            window_seconds: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
        }
    }

    /// …and down: after five minutes of lower recommendations, to any size.
    pub fn default_down() -> Rules {
        Rules {
            window_seconds: 300,
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            }],
        }
    }
}

/// One HPA's memory between syncs.
#[derive(Debug, Clone, Default)]
pub struct History {
    recommendations: Vec<(DateTime<Utc>, i64)>,
    /// Replicas added (up) or removed (down) by each rescale.
    up_events: Vec<(DateTime<Utc>, i64)>,
    down_events: Vec<(DateTime<Utc>, i64)>,
}

/// Why the result differs from the proposal, in the conditions' words.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub desired: i64,
    /// AbleToScale's reason and message when stabilization held the size.
    pub stabilized: Option<(&'static str, &'static str)>,
    /// ScalingLimited: (status, reason, message).
    pub limited: (&'static str, &'static str, &'static str),
}

pub(crate) const WITHIN: (&str, &str, &str) = (
    "False",
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
pub(crate) const TOO_MANY: (&str, &str, &str) = (
    "True",
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
pub(crate) const TOO_FEW: (&str, &str, &str) = (
    "True",
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str, &str) = (
    "True",
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str, &str) = (
    "True",
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);

impl History {
    /// The size to set for `proposed` (what the metrics ask) at `current`.
    pub fn normalize(
        &mut self,
        behavior: Option<&Behavior>,
        current: i64,
        proposed: i64,
        (min, max): (i64, i64),
        now: DateTime<Utc>,
    ) -> Outcome {
        match behavior {
            None => self.without_behavior(current, proposed, min, max, now),
            Some(b) => self.with_behavior(b, current, proposed, min, max, now),
        }
    }

    fn without_behavior(
        &mut self,
        current: i64,
        proposed: i64,
        min: i64,
        max: i64,
        now: DateTime<Utc>,
    ) -> Outcome {
        let cutoff = now - Duration::seconds(Rules::default_down().window_seconds);
        self.recommendations.retain(|(t, _)| *t > cutoff);
        self.recommendations.push((now, proposed));
        let stabilized = self
            .recommendations
            .iter()
            .map(|r| r.1)
            .max()
            .unwrap_or(proposed);
        let up_limit = (2 * current).max(4);
        let (ceiling, over) = if max > up_limit {
            (up_limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        let (desired, limited) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > ceiling {
            (ceiling, over)
        } else {
            (stabilized, WITHIN)
        };
        Outcome {
            desired,
            stabilized: (stabilized != proposed).then_some(DOWN_STABILIZED),
            limited,
        }
    }

    fn with_behavior(
        &mut self,
        b: &Behavior,
        current: i64,
        proposed: i64,
        min: i64,
        max: i64,
        now: DateTime<Utc>,
    ) -> Outcome {
        let up_cutoff = now - Duration::seconds(b.up.window_seconds);
        let down_cutoff = now - Duration::seconds(b.down.window_seconds);
        let (mut up, mut down) = (proposed, proposed);
        for &(t, r) in &self.recommendations {
            if t > up_cutoff {
                up = up.min(r);
            }
            if t > down_cutoff {
                down = down.max(r);
            }
        }
        let stabilized = current.max(up).min(down);
        self.recommendations
            .retain(|(t, _)| *t > up_cutoff || *t > down_cutoff);
        self.recommendations.push((now, proposed));
        let held = (stabilized != proposed).then_some(if proposed >= current {
            UP_STABILIZED
        } else {
            DOWN_STABILIZED
        });
        let (desired, limited) = self.rate_limited(b, current, stabilized, min, max, now);
        Outcome {
            desired,
            stabilized: held,
            limited,
        }
    }

    fn rate_limited(
        &self,
        b: &Behavior,
        current: i64,
        desired: i64,
        min: i64,
        max: i64,
        now: DateTime<Utc>,
    ) -> (i64, (&'static str, &'static str, &'static str)) {
        if desired > current {
            let limit = up_limit(current, &self.up_events, &b.up, now).max(current);
            let (ceiling, why) = if max > limit {
                (limit, UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            if desired > ceiling {
                return (ceiling, why);
            }
        } else if desired < current {
            let limit = down_limit(current, &self.down_events, &b.down, now).min(current);
            let (floor, why) = if min < limit {
                (limit, DOWN_LIMIT)
            } else {
                (min, TOO_FEW)
            };
            if desired < floor {
                return (floor, why);
            }
        }
        (desired, WITHIN)
    }

    /// Remembers a rescale from `from` to `to`, for the policies' periods.
    pub fn rescaled(&mut self, from: i64, to: i64, now: DateTime<Utc>) {
        // Older than any period worth keeping (30 minutes is the API's maximum).
        let cutoff = now - Duration::minutes(30);
        self.up_events.retain(|e| e.0 > cutoff);
        self.down_events.retain(|e| e.0 > cutoff);
        if to > from {
            self.up_events.push((now, to - from));
        } else if to < from {
            self.down_events.push((now, from - to));
        }
    }
}

fn changed_within(events: &[(DateTime<Utc>, i64)], period_seconds: i64, now: DateTime<Utc>) -> i64 {
    let cutoff = now - Duration::seconds(period_seconds);
    events.iter().filter(|e| e.0 > cutoff).map(|e| e.1).sum()
}

fn up_limit(
    current: i64,
    events: &[(DateTime<Utc>, i64)],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i64 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current - changed_within(events, p.period_seconds, now);
        match p.kind {
            PolicyKind::Pods => start + p.value,
            PolicyKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
        }
    });
    match rules.select {
        Select::Disabled => current,
        Select::Max => proposals.max().unwrap_or(current),
        Select::Min => proposals.min().unwrap_or(current),
    }
}

fn down_limit(
    current: i64,
    events: &[(DateTime<Utc>, i64)],
    rules: &Rules,
    now: DateTime<Utc>,
) -> i64 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current + changed_within(events, p.period_seconds, now);
        match p.kind {
            PolicyKind::Pods => start - p.value,
            PolicyKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i64,
        }
    });
    // Max picks the policy allowing the most change: the lowest floor.
    match rules.select {
        Select::Disabled => current,
        Select::Max => proposals.min().unwrap_or(current),
        Select::Min => proposals.max().unwrap_or(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn without_behavior_down_waits_five_minutes_and_up_at_most_doubles() {
        let mut h = History::default();
        let o = h.normalize(None, 5, 5, (1, 10), t(0));
        assert_eq!(o.desired, 5);
        // Load falls: the proposal is 2, but 5 was recommended within five minutes.
        let o = h.normalize(None, 5, 2, (1, 10), t(60));
        assert_eq!((o.desired, o.stabilized), (5, Some(DOWN_STABILIZED)));
        let o = h.normalize(None, 5, 2, (1, 10), t(301));
        assert_eq!((o.desired, o.stabilized), (2, None));
        // Up from 2 to 10 at once is limited to max(2 × 2, 4).
        let o = h.normalize(None, 2, 10, (1, 10), t(400));
        assert_eq!((o.desired, o.limited.1), (4, "ScaleUpLimit"));
        let o = h.normalize(None, 8, 30, (1, 10), t(401));
        assert_eq!((o.desired, o.limited.1), (10, "TooManyReplicas"));
        let o = h.normalize(None, 3, 0, (2, 10), t(1000));
        assert_eq!((o.desired, o.limited.1), (2, "TooFewReplicas"));
    }

    #[test]
    fn default_behavior_scales_up_by_4_pods_or_100_percent() {
        let b = Behavior {
            up: Rules::default_up(),
            down: Rules::default_down(),
        };
        let mut h = History::default();
        // From 5: Pods allows 9, Percent 10; Max takes 10.
        let o = h.normalize(Some(&b), 5, 20, (1, 50), t(0));
        assert_eq!((o.desired, o.limited.1), (10, "ScaleUpLimit"));
        h.rescaled(5, 10, t(0));
        // Within the same 15 s, the period started at 5: still at most 10.
        assert_eq!(h.normalize(Some(&b), 10, 20, (1, 50), t(10)).desired, 10);
        // A period later, from 10: up to 20.
        assert_eq!(h.normalize(Some(&b), 10, 20, (1, 50), t(16)).desired, 20);
    }

    #[test]
    fn the_documented_scale_down_policies() {
        // "scaleDown: policies: Pods 4 per 60 s, Percent 10 per 60 s": at 80 replicas
        // the percent policy allows 8 and Max takes the larger change.
        let down = Rules {
            window_seconds: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 60,
                },
                Policy {
                    kind: PolicyKind::Percent,
                    value: 10,
                    period_seconds: 60,
                },
            ],
        };
        let b = Behavior {
            up: Rules::default_up(),
            down: down.clone(),
        };
        let mut h = History::default();
        let o = h.normalize(Some(&b), 80, 10, (1, 100), t(0));
        assert_eq!((o.desired, o.limited.1), (72, "ScaleDownLimit"));
        // selectPolicy Min: the smaller change, 4 pods.
        let b = Behavior {
            up: Rules::default_up(),
            down: Rules {
                select: Select::Min,
                ..down.clone()
            },
        };
        assert_eq!(
            History::default()
                .normalize(Some(&b), 80, 10, (1, 100), t(0))
                .desired,
            76
        );
        // Disabled: no scale-down at all.
        let b = Behavior {
            up: Rules::default_up(),
            down: Rules {
                select: Select::Disabled,
                ..down
            },
        };
        assert_eq!(
            History::default()
                .normalize(Some(&b), 80, 10, (1, 100), t(0))
                .desired,
            80
        );
    }

    #[test]
    fn an_up_window_takes_the_lowest_recent_recommendation() {
        let up = Rules {
            window_seconds: 60,
            ..Rules::default_up()
        };
        let b = Behavior {
            up,
            down: Rules::default_down(),
        };
        let mut h = History::default();
        assert_eq!(h.normalize(Some(&b), 3, 3, (1, 10), t(0)).desired, 3);
        let o = h.normalize(Some(&b), 3, 6, (1, 10), t(30));
        assert_eq!((o.desired, o.stabilized), (3, Some(UP_STABILIZED)));
        // A minute of higher recommendations: up it goes.
        assert_eq!(h.normalize(Some(&b), 3, 6, (1, 10), t(61)).desired, 6);
    }
}
