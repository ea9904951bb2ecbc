//! The scaling decisions as pure functions of what the executor observed and a time: target
//! tracking, step scaling, cooldowns, min/max, suspension, deployments, and how several policies
//! of one scalable target combine. No I/O, no store, no wire shapes.

use serde::{Deserialize, Serialize};

/// Application Auto Scaling's default cooldown for ECS, for a policy that names none.
pub const DEFAULT_COOLDOWN_SECS: i64 = 300;

/// Keeps `2 × 50 / 50` from becoming `2.000…1` and rounding up to 3.
const EPSILON: f64 = 1e-9;

/// The capacity a target-tracking policy asks for: ECS service capacity is proportional to the
/// load, so `current × metric / target`, rounded up. Rounding up is what makes scale-in
/// conservative (it keeps the partial task) and scale-out sufficient. A service at zero with a
/// metric above the target gets one task: nothing proportional can be computed from zero.
pub fn target_tracking_capacity(current: i32, metric: f64, target: f64) -> i32 {
    if target <= 0.0 || !metric.is_finite() {
        return current;
    }
    if current <= 0 {
        return i32::from(metric > target);
    }
    let wanted = (f64::from(current) * metric / target - EPSILON).ceil();
    wanted.clamp(0.0, f64::from(i32::MAX)) as i32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdjustmentType {
    ChangeInCapacity,
    PercentChangeInCapacity,
    ExactCapacity,
}

impl AdjustmentType {
    pub fn parse(s: &str) -> Option<AdjustmentType> {
        match s {
            "ChangeInCapacity" => Some(AdjustmentType::ChangeInCapacity),
            "PercentChangeInCapacity" => Some(AdjustmentType::PercentChangeInCapacity),
            "ExactCapacity" => Some(AdjustmentType::ExactCapacity),
            _ => None,
        }
    }
}

/// One step: bounds are relative to the alarm's threshold (`value − threshold`); `None` is
/// unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepConfig {
    pub adjustment_type: AdjustmentType,
    pub steps: Vec<Step>,
    pub min_adjustment_magnitude: Option<i32>,
}

/// The step whose interval holds `breach` (= value − threshold). Above the threshold the lower
/// bound is inclusive and the upper exclusive; below it the other way round, as AWS documents.
pub fn pick_step(steps: &[Step], breach: f64) -> Option<&Step> {
    steps.iter().find(|s| {
        let lower = s.lower.unwrap_or(f64::NEG_INFINITY);
        let upper = s.upper.unwrap_or(f64::INFINITY);
        if breach >= 0.0 {
            lower <= breach && breach < upper
        } else {
            lower < breach && breach <= upper
        }
    })
}

/// The capacity a step policy asks for from `base`, or `None` when no step holds the breach.
/// Percent changes round as AWS rounds them: toward zero beyond ±1, away from zero within it,
/// then at least `min_adjustment_magnitude` in the step's direction.
pub fn step_capacity(base: i32, breach: f64, config: &StepConfig) -> Option<i32> {
    let step = pick_step(&config.steps, breach)?;
    let wanted = match config.adjustment_type {
        AdjustmentType::ExactCapacity => step.adjustment,
        AdjustmentType::ChangeInCapacity => base.saturating_add(step.adjustment),
        AdjustmentType::PercentChangeInCapacity => {
            let raw = f64::from(base) * f64::from(step.adjustment) / 100.0;
            let mut change = if !(-1.0..=1.0).contains(&raw) {
                raw.trunc() as i32
            } else if raw > 0.0 {
                1
            } else if raw < 0.0 {
                -1
            } else {
                0
            };
            if let Some(min) = config.min_adjustment_magnitude
                && change != 0
                && change.abs() < min
            {
                change = change.signum() * min;
            }
            base.saturating_add(change)
        }
    };
    Some(wanted.max(0))
}

/// What one policy knows when the target is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyInput {
    TargetTracking {
        target: f64,
        disable_scale_in: bool,
        /// The newest value of the high alarm when it is in ALARM.
        high: Option<f64>,
        /// The newest value of the low alarm when it is in ALARM.
        low: Option<f64>,
        scale_out_cooldown_secs: i64,
        scale_in_cooldown_secs: i64,
    },
    Step {
        config: StepConfig,
        /// `value − threshold` of the policy's alarm when it is in ALARM.
        breach: Option<f64>,
        cooldown_secs: i64,
    },
}

/// What a policy says about the target's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposal {
    Out(i32),
    In(i32),
    /// A policy that takes part and wants the capacity kept (a target-tracking policy whose
    /// alarms are quiet): it vetoes scale-in by the others.
    Hold,
    /// A policy that takes no part: a step policy whose alarm is quiet, a target-tracking
    /// policy with scale-in disabled when nothing asks it to scale out.
    Abstain,
}

/// Cooldowns of a scalable target, kept between evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cooldowns {
    /// Until when a scale-out cooldown runs, and the capacity before the scale-out that started
    /// it: during the cooldown, scale-out is computed from that capacity, so the capacity just
    /// added counts toward the next scale-out and only a larger one goes ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_until_ms: Option<i64>,
    #[serde(default)]
    pub scale_out_base: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_until_ms: Option<i64>,
}

impl Cooldowns {
    fn out_active(&self, now_ms: i64) -> bool {
        self.scale_out_until_ms.is_some_and(|t| now_ms < t)
    }

    fn in_active(&self, now_ms: i64) -> bool {
        self.scale_in_until_ms.is_some_and(|t| now_ms < t)
    }
}

/// The scalable target as the executor sees it at `now_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    pub now_ms: i64,
    /// The ECS service's desiredCount.
    pub current: i32,
    pub min: i32,
    pub max: i32,
    pub scale_in_suspended: bool,
    pub scale_out_suspended: bool,
    /// ECS has a deployment of the service under way: no scale-in until it ends.
    pub deployment_in_progress: bool,
    pub cooldowns: Cooldowns,
}

/// Why nothing changed, when a policy asked for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    NothingAsked,
    ScaleOutSuspended,
    ScaleInSuspended,
    /// Some policy wants the capacity kept, so scale-in waits for all of them.
    NotAllAgree,
    DeploymentInProgress,
    ScaleOutCooldown,
    ScaleInCooldown,
    /// `NotScaledReason` codes AWS reports.
    AlreadyAtMaxCapacity,
    AlreadyAtMinCapacity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Set the desired count to `to`; `policy` is the index of the policy that decided, and
    /// `cooldowns` what to keep afterwards.
    Scale {
        to: i32,
        policy: usize,
        cooldowns: Cooldowns,
    },
    Hold(Held),
}

/// What each policy proposes in `situation`.
pub fn proposals(situation: &Situation, policies: &[PolicyInput]) -> Vec<Proposal> {
    let current = situation.current;
    // During a scale-out cooldown, scale-out is computed from the capacity before it began.
    let out_base = if situation.cooldowns.out_active(situation.now_ms) {
        situation.cooldowns.scale_out_base
    } else {
        current
    };
    policies
        .iter()
        .map(|p| match p {
            PolicyInput::TargetTracking {
                target,
                disable_scale_in,
                high,
                low,
                ..
            } => {
                if let Some(value) = high {
                    let wanted = target_tracking_capacity(out_base, *value, *target);
                    return if wanted > current {
                        Proposal::Out(wanted)
                    } else {
                        Proposal::Hold
                    };
                }
                if *disable_scale_in {
                    return Proposal::Abstain;
                }
                match low {
                    Some(value) => {
                        let wanted = target_tracking_capacity(current, *value, *target);
                        if wanted < current {
                            Proposal::In(wanted)
                        } else {
                            Proposal::Hold
                        }
                    }
                    None => Proposal::Hold,
                }
            }
            PolicyInput::Step { config, breach, .. } => {
                let Some(breach) = breach else {
                    return Proposal::Abstain;
                };
                match step_capacity(current, *breach, config) {
                    Some(w) if w > current => match step_capacity(out_base, *breach, config) {
                        Some(w) if w > current => Proposal::Out(w),
                        _ => Proposal::Hold,
                    },
                    Some(w) if w < current => Proposal::In(w),
                    Some(_) => Proposal::Hold,
                    None => Proposal::Abstain,
                }
            }
        })
        .collect()
}

/// The decision for a scalable target: scale out if any policy says out (to the largest
/// capacity asked); scale in only if every policy that takes part says in (to the largest
/// capacity asked, the smallest reduction); always within min and max.
pub fn decide(situation: &Situation, policies: &[PolicyInput]) -> Decision {
    let proposed = proposals(situation, policies);
    let s = situation;
    let clamp = |n: i32| n.clamp(s.min, s.max.max(s.min));

    let out = proposed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Proposal::Out(n) => Some((i, *n)),
            _ => None,
        })
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)));
    if let Some((policy, wanted)) = out {
        if s.scale_out_suspended {
            return Decision::Hold(Held::ScaleOutSuspended);
        }
        let to = clamp(wanted);
        if to <= s.current {
            return Decision::Hold(Held::AlreadyAtMaxCapacity);
        }
        let cooldown_ms = match &policies[policy] {
            PolicyInput::TargetTracking {
                scale_out_cooldown_secs,
                ..
            } => scale_out_cooldown_secs * 1000,
            PolicyInput::Step { cooldown_secs, .. } => cooldown_secs * 1000,
        };
        // A scale-out during a scale-out cooldown keeps the capacity that began it as the base;
        // a scale-out ends any scale-in cooldown, as AWS documents.
        let base = if s.cooldowns.out_active(s.now_ms) {
            s.cooldowns.scale_out_base
        } else {
            s.current
        };
        return Decision::Scale {
            to,
            policy,
            cooldowns: Cooldowns {
                scale_out_until_ms: Some(s.now_ms + cooldown_ms),
                scale_out_base: base,
                scale_in_until_ms: None,
            },
        };
    }

    let ins: Vec<(usize, i32)> = proposed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Proposal::In(n) => Some((i, *n)),
            _ => None,
        })
        .collect();
    let Some(&(policy, wanted)) = ins.iter().max_by_key(|&&(i, n)| (n, std::cmp::Reverse(i)))
    else {
        return Decision::Hold(Held::NothingAsked);
    };
    if proposed.contains(&Proposal::Hold) {
        return Decision::Hold(Held::NotAllAgree);
    }
    if s.scale_in_suspended {
        return Decision::Hold(Held::ScaleInSuspended);
    }
    if s.deployment_in_progress {
        return Decision::Hold(Held::DeploymentInProgress);
    }
    if s.cooldowns.out_active(s.now_ms) {
        return Decision::Hold(Held::ScaleOutCooldown);
    }
    if s.cooldowns.in_active(s.now_ms) {
        return Decision::Hold(Held::ScaleInCooldown);
    }
    let to = clamp(wanted);
    if to >= s.current {
        return Decision::Hold(Held::AlreadyAtMinCapacity);
    }
    let cooldown_ms = match &policies[policy] {
        PolicyInput::TargetTracking {
            scale_in_cooldown_secs,
            ..
        } => scale_in_cooldown_secs * 1000,
        PolicyInput::Step { cooldown_secs, .. } => cooldown_secs * 1000,
    };
    Decision::Scale {
        to,
        policy,
        cooldowns: Cooldowns {
            scale_out_until_ms: s.cooldowns.scale_out_until_ms,
            scale_out_base: s.cooldowns.scale_out_base,
            scale_in_until_ms: Some(s.now_ms + cooldown_ms),
        },
    }
}

/// What a scheduled action does to a target: new min and max (an absent one is kept; a new
/// bound that crosses the kept one moves it along), and the desired count moved into them.
pub fn scheduled(
    current: i32,
    min: i32,
    max: i32,
    new_min: Option<i32>,
    new_max: Option<i32>,
) -> (i32, i32, i32) {
    let (mut lo, mut hi) = (new_min.unwrap_or(min), new_max.unwrap_or(max));
    if lo > hi {
        if new_min.is_some() && new_max.is_none() {
            hi = lo;
        } else {
            lo = hi;
        }
    }
    (lo, hi, current.clamp(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn situation(current: i32) -> Situation {
        Situation {
            now_ms: NOW,
            current,
            min: 1,
            max: 10,
            scale_in_suspended: false,
            scale_out_suspended: false,
            deployment_in_progress: false,
            cooldowns: Cooldowns::default(),
        }
    }

    fn tt(high: Option<f64>, low: Option<f64>) -> PolicyInput {
        PolicyInput::TargetTracking {
            target: 50.0,
            disable_scale_in: false,
            high,
            low,
            scale_out_cooldown_secs: 60,
            scale_in_cooldown_secs: 120,
        }
    }

    fn steps(kind: AdjustmentType, steps: &[(Option<f64>, Option<f64>, i32)]) -> StepConfig {
        StepConfig {
            adjustment_type: kind,
            steps: steps
                .iter()
                .map(|&(lower, upper, adjustment)| Step {
                    lower,
                    upper,
                    adjustment,
                })
                .collect(),
            min_adjustment_magnitude: None,
        }
    }

    fn step(config: StepConfig, breach: Option<f64>) -> PolicyInput {
        PolicyInput::Step {
            config,
            breach,
            cooldown_secs: 60,
        }
    }

    fn scaled_to(d: &Decision) -> Option<i32> {
        match d {
            Decision::Scale { to, .. } => Some(*to),
            Decision::Hold(_) => None,
        }
    }

    #[test]
    fn target_tracking_capacity_is_proportional_and_rounded_up() {
        // (current, metric, target, expected)
        let table = [
            (2, 90.0, 50.0, 4), // 3.6 → 4
            (2, 50.0, 50.0, 2), // exactly on target: no rounding up from float noise
            (4, 20.0, 50.0, 2), // 1.6 → 2: scale-in keeps the partial task
            (3, 10.0, 50.0, 1), // 0.6 → 1
            (1, 0.0, 50.0, 0),  // idle: min/max clamp later
            (0, 80.0, 50.0, 1), // from zero, one task
            (0, 20.0, 50.0, 0), // from zero and below target, nothing
            (10, 51.0, 50.0, 11),
        ];
        for (current, metric, target, expected) in table {
            assert_eq!(
                target_tracking_capacity(current, metric, target),
                expected,
                "{current} × {metric} / {target}"
            );
        }
    }

    #[test]
    fn step_picks_the_interval_holding_the_breach() {
        let cfg = steps(
            AdjustmentType::ChangeInCapacity,
            &[
                (Some(0.0), Some(10.0), 1),
                (Some(10.0), Some(20.0), 2),
                (Some(20.0), None, 3),
                (None, Some(0.0), -1),
            ],
        );
        // (breach, expected from 5)
        let table = [
            (0.0, Some(6)),
            (9.99, Some(6)),
            (10.0, Some(7)),
            (25.0, Some(8)),
            (-0.5, Some(4)),
            (-100.0, Some(4)),
        ];
        for (breach, expected) in table {
            assert_eq!(step_capacity(5, breach, &cfg), expected, "breach {breach}");
        }
        let gap = steps(AdjustmentType::ChangeInCapacity, &[(Some(10.0), None, 1)]);
        assert_eq!(step_capacity(5, 5.0, &gap), None);
        // Below the threshold the upper bound is inclusive.
        let below = steps(
            AdjustmentType::ChangeInCapacity,
            &[(Some(-10.0), Some(0.0), -1), (None, Some(-10.0), -2)],
        );
        assert_eq!(step_capacity(5, -10.0, &below), Some(3));
        assert_eq!(step_capacity(5, -9.0, &below), Some(4));
    }

    #[test]
    fn step_adjustment_types_round_as_aws() {
        let one = |kind, adj| steps(kind, &[(Some(0.0), None, adj)]);
        // (base, type, adjustment, min magnitude, expected)
        let table = [
            (10, AdjustmentType::ChangeInCapacity, 3, None, 13),
            (2, AdjustmentType::ChangeInCapacity, -5, None, 0),
            (10, AdjustmentType::ExactCapacity, 4, None, 4),
            (10, AdjustmentType::PercentChangeInCapacity, 25, None, 12), // 2.5 → 2
            (10, AdjustmentType::PercentChangeInCapacity, -67, None, 4), // -6.7 → -6
            (2, AdjustmentType::PercentChangeInCapacity, 10, None, 3),   // 0.2 → 1
            (2, AdjustmentType::PercentChangeInCapacity, -10, None, 1),  // -0.2 → -1
            (10, AdjustmentType::PercentChangeInCapacity, 10, Some(3), 13), // 1 → 3
            (10, AdjustmentType::PercentChangeInCapacity, -10, Some(2), 8), // -1 → -2
            (10, AdjustmentType::PercentChangeInCapacity, 50, Some(2), 15), // 5 stays 5
        ];
        for (base, kind, adj, mam, expected) in table {
            let mut cfg = one(kind, adj);
            cfg.min_adjustment_magnitude = mam;
            assert_eq!(
                step_capacity(base, 1.0, &cfg),
                Some(expected),
                "{base} {kind:?} {adj} {mam:?}"
            );
        }
    }

    #[test]
    fn capacity_stays_within_min_and_max() {
        let mut s = situation(8);
        assert_eq!(scaled_to(&decide(&s, &[tt(Some(200.0), None)])), Some(10));
        s.current = 10;
        assert_eq!(
            decide(&s, &[tt(Some(200.0), None)]),
            Decision::Hold(Held::AlreadyAtMaxCapacity)
        );
        s.current = 2;
        assert_eq!(scaled_to(&decide(&s, &[tt(None, Some(1.0))])), Some(1));
        s.current = 1;
        assert_eq!(
            decide(&s, &[tt(None, Some(1.0))]),
            Decision::Hold(Held::NothingAsked)
        );
    }

    #[test]
    fn scale_out_cooldown_lets_only_a_larger_scale_out_through() {
        let mut s = situation(2);
        let d = decide(&s, &[tt(Some(90.0), None)]);
        let Decision::Scale { to, cooldowns, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(to, 4);
        assert_eq!(cooldowns.scale_out_base, 2);
        assert_eq!(cooldowns.scale_out_until_ms, Some(NOW + 60_000));

        // 30 s later, same load: computed from the base (2), 4 is not more than 4.
        s.current = 4;
        s.now_ms = NOW + 30_000;
        s.cooldowns = cooldowns;
        assert_eq!(
            decide(&s, &[tt(Some(90.0), None)]),
            Decision::Hold(Held::NothingAsked)
        );
        // A larger breach still scales out, from the base: ceil(2 × 150 / 50) = 6.
        assert_eq!(scaled_to(&decide(&s, &[tt(Some(150.0), None)])), Some(6));
        // Scale-in is blocked during a scale-out cooldown.
        assert_eq!(
            decide(&s, &[tt(None, Some(10.0))]),
            Decision::Hold(Held::ScaleOutCooldown)
        );
        // After the cooldown the same load counts from the current capacity again.
        s.now_ms = NOW + 60_000;
        assert_eq!(scaled_to(&decide(&s, &[tt(Some(90.0), None)])), Some(8));
        assert_eq!(scaled_to(&decide(&s, &[tt(None, Some(10.0))])), Some(1));
    }

    #[test]
    fn scale_in_cooldown_blocks_scale_in_but_not_scale_out() {
        let mut s = situation(6);
        let d = decide(&s, &[tt(None, Some(20.0))]);
        let Decision::Scale { to, cooldowns, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(to, 3);
        assert_eq!(cooldowns.scale_in_until_ms, Some(NOW + 120_000));
        s.current = 3;
        s.now_ms = NOW + 60_000;
        s.cooldowns = cooldowns;
        assert_eq!(
            decide(&s, &[tt(None, Some(10.0))]),
            Decision::Hold(Held::ScaleInCooldown)
        );
        let d = decide(&s, &[tt(Some(100.0), None)]);
        let Decision::Scale { to, cooldowns, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(to, 6);
        assert_eq!(cooldowns.scale_in_until_ms, None, "scale-out ends it");
        s.now_ms = NOW + 120_000;
        s.cooldowns = Cooldowns {
            scale_in_until_ms: Some(NOW + 120_000),
            ..Cooldowns::default()
        };
        assert_eq!(scaled_to(&decide(&s, &[tt(None, Some(10.0))])), Some(1));
    }

    #[test]
    fn step_cooldown_counts_the_capacity_already_added() {
        // AWS's documented example: +2 at the first breach; during the cooldown a breach of
        // the +3 step adds only what the first did not: 10 + 3 = 13.
        let cfg = steps(
            AdjustmentType::ChangeInCapacity,
            &[(Some(0.0), Some(10.0), 2), (Some(10.0), None, 3)],
        );
        let mut s = situation(10);
        s.max = 20;
        let d = decide(&s, &[step(cfg.clone(), Some(5.0))]);
        let Decision::Scale { to, cooldowns, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(to, 12);
        s.current = 12;
        s.now_ms += 10_000;
        s.cooldowns = cooldowns;
        assert_eq!(
            scaled_to(&decide(&s, &[step(cfg.clone(), Some(15.0))])),
            Some(13)
        );
        assert_eq!(
            decide(&s, &[step(cfg, Some(5.0))]),
            Decision::Hold(Held::NothingAsked)
        );
    }

    #[test]
    fn policies_combine_out_if_any_in_only_if_all() {
        let s = situation(6);
        // Any out: the largest.
        let d = decide(&s, &[tt(Some(60.0), None), tt(Some(100.0), None)]);
        assert!(
            matches!(
                d,
                Decision::Scale {
                    to: 10,
                    policy: 1,
                    ..
                }
            ),
            "{d:?}"
        );
        // Out wins over in.
        assert_eq!(
            scaled_to(&decide(&s, &[tt(None, Some(10.0)), tt(Some(60.0), None)])),
            Some(8)
        );
        // In only if all say in; the smallest reduction.
        assert_eq!(
            decide(&s, &[tt(None, Some(10.0)), tt(None, None)]),
            Decision::Hold(Held::NotAllAgree)
        );
        let d = decide(&s, &[tt(None, Some(10.0)), tt(None, Some(30.0))]);
        assert_eq!(scaled_to(&d), Some(4));
        assert!(matches!(d, Decision::Scale { policy: 1, .. }));
        // DisableScaleIn takes no part in scale-in.
        let no_in = PolicyInput::TargetTracking {
            target: 50.0,
            disable_scale_in: true,
            high: None,
            low: Some(1.0),
            scale_out_cooldown_secs: 60,
            scale_in_cooldown_secs: 60,
        };
        assert_eq!(
            decide(&s, std::slice::from_ref(&no_in)),
            Decision::Hold(Held::NothingAsked)
        );
        assert_eq!(
            scaled_to(&decide(&s, &[no_in, tt(None, Some(10.0))])),
            Some(2)
        );
        // A quiet step policy abstains; a quiet target-tracking one holds.
        let out_step = steps(AdjustmentType::ChangeInCapacity, &[(Some(0.0), None, 1)]);
        assert_eq!(
            scaled_to(&decide(&s, &[step(out_step, None), tt(None, Some(10.0))])),
            Some(2)
        );
    }

    #[test]
    fn suspension_and_deployments_stop_what_they_name() {
        let mut s = situation(4);
        s.scale_out_suspended = true;
        assert_eq!(
            decide(&s, &[tt(Some(90.0), None)]),
            Decision::Hold(Held::ScaleOutSuspended)
        );
        assert_eq!(scaled_to(&decide(&s, &[tt(None, Some(10.0))])), Some(1));
        let mut s = situation(4);
        s.scale_in_suspended = true;
        assert_eq!(
            decide(&s, &[tt(None, Some(10.0))]),
            Decision::Hold(Held::ScaleInSuspended)
        );
        assert_eq!(scaled_to(&decide(&s, &[tt(Some(90.0), None)])), Some(8));
        let mut s = situation(4);
        s.deployment_in_progress = true;
        assert_eq!(
            decide(&s, &[tt(None, Some(10.0))]),
            Decision::Hold(Held::DeploymentInProgress)
        );
        assert_eq!(scaled_to(&decide(&s, &[tt(Some(90.0), None)])), Some(8));
    }

    #[test]
    fn scheduled_actions_move_bounds_and_desired() {
        // (current, min, max, new min, new max) → (min, max, desired)
        let table = [
            ((3, 1, 10, Some(5), None), (5, 10, 5)),
            ((3, 1, 10, None, Some(2)), (1, 2, 2)),
            ((3, 1, 10, Some(2), Some(4)), (2, 4, 3)),
            ((3, 1, 4, Some(6), None), (6, 6, 6)),
            ((3, 5, 10, None, Some(2)), (2, 2, 2)),
        ];
        for ((c, lo, hi, nlo, nhi), expected) in table {
            assert_eq!(scheduled(c, lo, hi, nlo, nhi), expected);
        }
    }
}
