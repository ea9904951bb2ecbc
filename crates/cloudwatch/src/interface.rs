//! What other crates hand to CloudWatch and get from it: datapoints in (from the agents'
//! container stats, the load balancer and PutMetricData alike), alarm transitions out (to
//! Application Auto Scaling, which owns the policies alarms name as actions).

/// The value part of a datapoint: one value, or a pre-aggregated statistic set as PutMetricData
/// allows (`StatisticValues`).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    One(f64),
    Set {
        sample_count: f64,
        sum: f64,
        minimum: f64,
        maximum: f64,
    },
}

/// One observation of a metric, in one partition (`account/region`).
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    pub namespace: String,
    pub metric_name: String,
    /// Dimension name → value, in the order given; the series identity sorts them.
    pub dimensions: Vec<(String, String)>,
    pub timestamp_ms: i64,
    pub values: Values,
    /// A CloudWatch `StandardUnit` value, e.g. `Percent`; `None` means `None`.
    pub unit: Option<String>,
    /// 1 for high resolution, 60 otherwise.
    pub storage_resolution: u32,
}

/// An alarm changed state. Fired once per transition, after the new state is stored (a
/// composite's held back by its actions suppressor is stored with it until it fires).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmTransition {
    /// `account/region` of the alarm.
    pub partition: String,
    pub alarm_name: String,
    pub alarm_arn: String,
    pub old_state: String,
    pub new_state: String,
    pub reason: String,
    /// The actions configured for the new state (`AlarmActions`, `OKActions` or
    /// `InsufficientDataActions`); empty when actions are disabled.
    pub actions: Vec<String>,
    pub timestamp_ms: i64,
    /// The newest datapoint the evaluation used (the metric's statistic over one period), and
    /// the alarm's threshold: what step scaling needs to pick its step, and target tracking to
    /// compute the new capacity.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
}

/// Where alarm transitions go. Implementations must not block: spawn if the work is slow.
pub trait AlarmActions: Send + Sync {
    fn fire(&self, transition: AlarmTransition);
}

/// For a CloudWatch with nothing listening to its alarms.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoActions;

impl AlarmActions for NoActions {
    fn fire(&self, _transition: AlarmTransition) {}
}
