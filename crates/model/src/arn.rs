//! Amazon Resource Names: `arn:aws:<service>:<region>:<account>:<resource>`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    /// Everything after the fifth colon, e.g. `cluster/default` or `task-definition/web:3`.
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ARN: {0}")]
pub struct ArnError(pub String);

impl Arn {
    pub fn new(service: &str, region: &str, account: &str, resource: impl Into<String>) -> Self {
        Arn {
            partition: "aws".into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        }
    }

    pub fn parse(s: &str) -> Result<Arn, ArnError> {
        let mut parts = s.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(ArnError(s.to_string()));
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(ArnError(s.to_string()));
        }
        Ok(Arn {
            partition: partition.into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        })
    }

    /// The resource type and the rest: `task-definition/web:3` → (`task-definition`, `web:3`).
    pub fn resource_parts(&self) -> (&str, &str) {
        self.resource
            .split_once('/')
            .unwrap_or((self.resource.as_str(), ""))
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3";
        let a = Arn::parse(s).unwrap();
        assert_eq!(a.resource_parts(), ("task-definition", "web:3"));
        assert_eq!(a.to_string(), s);
        assert!(Arn::parse("arn:aws:ecs").is_err());
        assert!(Arn::parse("cluster/default").is_err());
    }
}
