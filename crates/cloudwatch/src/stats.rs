//! Aggregates and CloudWatch's statistics over them.

use crate::interface::Values;

/// What a bucket of samples keeps: enough for SampleCount, Sum, Average, Minimum and Maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Agg {
    pub fn one(value: f64) -> Agg {
        Agg {
            count: 1.0,
            sum: value,
            min: value,
            max: value,
        }
    }

    pub fn from_values(values: &Values) -> Agg {
        match *values {
            Values::One(v) => Agg::one(v),
            Values::Set {
                sample_count,
                sum,
                minimum,
                maximum,
            } => Agg {
                count: sample_count,
                sum,
                min: minimum,
                max: maximum,
            },
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value of one of CloudWatch's basic statistics; `None` for a name that is not one.
    pub fn statistic(&self, stat: Statistic) -> f64 {
        match stat {
            Statistic::SampleCount => self.count,
            Statistic::Sum => self.sum,
            Statistic::Average => {
                if self.count > 0.0 {
                    self.sum / self.count
                } else {
                    0.0
                }
            }
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
        }
    }
}

/// CloudWatch's basic statistics, the ones per-minute aggregates answer exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
}

impl Statistic {
    /// The wire name (`Statistic` enum of the model), also accepted in GetMetricData's `Stat`
    /// with its short forms.
    pub fn parse(name: &str) -> Option<Statistic> {
        Some(match name {
            "SampleCount" => Statistic::SampleCount,
            "Average" | "avg" => Statistic::Average,
            "Sum" | "sum" => Statistic::Sum,
            "Minimum" | "min" => Statistic::Minimum,
            "Maximum" | "max" => Statistic::Maximum,
            _ => return None,
        })
    }
}

/// Whether `name` looks like an extended statistic (`p90`, `tm99`, `TS(10%:90%)`, …), which
/// needs the raw samples berth's per-minute aggregates do not keep.
pub fn is_extended(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["p", "tm", "wm", "tc", "ts", "pr"].iter().any(|prefix| {
        lower
            .strip_prefix(prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit() || c == '(')
    })
}

/// CloudWatch's `StandardUnit` values; the index is how the write-ahead log stores a unit.
pub const UNITS: &[&str] = &[
    "None",
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
];

pub fn unit_index(unit: Option<&str>) -> u8 {
    unit.and_then(|u| UNITS.iter().position(|known| *known == u))
        .unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_every_statistic_exact() {
        let mut agg = Agg::one(3.0);
        agg.merge(&Agg::one(5.0));
        agg.merge(&Agg {
            count: 2.0,
            sum: 2.0,
            min: 0.5,
            max: 1.5,
        });
        assert_eq!(agg.statistic(Statistic::SampleCount), 4.0);
        assert_eq!(agg.statistic(Statistic::Sum), 10.0);
        assert_eq!(agg.statistic(Statistic::Average), 2.5);
        assert_eq!(agg.statistic(Statistic::Minimum), 0.5);
        assert_eq!(agg.statistic(Statistic::Maximum), 5.0);
    }

    #[test]
    fn extended_statistics_are_recognized() {
        for name in [
            "p90",
            "p99.9",
            "tm99",
            "TS(10%:90%)",
            "wm(:95)",
            "PR(100:2000)",
        ] {
            assert!(is_extended(name), "{name}");
        }
        for name in ["Average", "Sum", "pizza", "max"] {
            assert!(!is_extended(name), "{name}");
        }
    }
}
