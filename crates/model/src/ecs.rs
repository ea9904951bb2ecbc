//! The rules ECS applies to names, task sizes and revisions, as its documentation states them.

/// Cluster, capacity provider and task definition family names: up to 255 letters, numbers,
/// underscores and hyphens.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Task-definition `cpu` as ECS accepts it: CPU units (`"1024"`) or vCPUs (`"1 vCPU"`,
/// `"0.25 vcpu"`). Returns CPU units.
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = lower.strip_suffix("vcpu")?.trim();
    let v: f64 = num.parse().ok()?;
    let units = v * 1024.0;
    (units.is_finite() && units > 0.0 && units.fract() == 0.0 && units <= u32::MAX as f64)
        .then_some(units as u32)
}

/// Task-definition `memory` as ECS accepts it: MiB (`"2048"`) or GB (`"2 GB"`, `"2GB"`).
/// Returns MiB.
pub fn parse_task_memory(s: &str) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = lower.strip_suffix("gb")?.trim();
    let v: f64 = num.parse().ok()?;
    let mib = v * 1024.0;
    (mib.is_finite() && mib > 0.0 && mib.fract() == 0.0 && mib <= u32::MAX as f64)
        .then_some(mib as u32)
}

/// Fargate's CPU/memory combinations (CPU units → allowed MiB), from the ECS developer guide.
pub fn fargate_memory_allowed(cpu: u32) -> Option<(u32, u32, u32)> {
    // (min, max, step) in MiB for each CPU size.
    match cpu {
        256 => Some((512, 2048, 512)),
        512 => Some((1024, 4096, 1024)),
        1024 => Some((2048, 8192, 1024)),
        2048 => Some((4096, 16384, 1024)),
        4096 => Some((8192, 30720, 1024)),
        8192 => Some((16384, 61440, 4096)),
        16384 => Some((32768, 122880, 8192)),
        _ => None,
    }
}

/// Whether `cpu` units and `memory` MiB form a valid Fargate task size.
pub fn fargate_size_valid(cpu: u32, memory: u32) -> bool {
    match fargate_memory_allowed(cpu) {
        // 256 CPU allows 512, 1024 and 2048 only.
        Some((min, max, step)) => {
            memory >= min && memory <= max && (memory - min).is_multiple_of(step)
        }
        None => false,
    }
}

/// The minimum memory ECS accepts for a container (`memory` or `memoryReservation`), in MiB.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;

/// How many tags ECS accepts on one resource.
pub const MAX_TAGS: usize = 50;

/// Tag keys with this prefix (any case) are reserved for AWS.
pub fn reserved_tag_key(key: &str) -> bool {
    key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web_app-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(&"a".repeat(256)));
        assert!(valid_name(&"a".repeat(255)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_task_cpu("1 vCPU"), Some(1024));
        assert_eq!(parse_task_cpu(".25 vcpu"), Some(256));
        assert_eq!(parse_task_cpu("512"), Some(512));
        assert_eq!(parse_task_cpu("lots"), None);
        assert_eq!(parse_task_memory("2 GB"), Some(2048));
        assert_eq!(parse_task_memory("0.5GB"), Some(512));
        assert_eq!(parse_task_memory("3072"), Some(3072));
        assert!(fargate_size_valid(256, 512));
        assert!(fargate_size_valid(256, 2048));
        assert!(!fargate_size_valid(256, 4096));
        assert!(fargate_size_valid(1024, 3072));
        assert!(!fargate_size_valid(1024, 1024));
        assert!(fargate_size_valid(8192, 20480));
        assert!(!fargate_size_valid(8192, 18432));
        assert!(!fargate_size_valid(300, 1024));
    }
}
