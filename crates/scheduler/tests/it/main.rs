//! Property tests of berth-scheduler: printed expressions parse back to the same tree, no input
//! makes the parser panic, and a placed batch never oversubscribes, breaks a constraint, or
//! gives up while some instance could still take the task.

use berth_scheduler::query::Facts;
use berth_scheduler::{
    Constraint, Demand, Instance, Resource, Resources, SpreadField, Strategy as Rank, TaskRequest,
    misfit, parse, place,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn bare() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._:-]{0,8}"
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![bare(), "[ -~]{0,8}", "\\PC{0,4}"]
}

fn comparison() -> impl Strategy<Value = String> {
    let version = "[0-9]{1,3}(\\.[0-9]{1,3}){0,2}";
    let date = prop_oneof![
        Just("2018-06-18".to_string()),
        Just("2018-06-18T22:28:28Z".to_string()),
        Just("2018-06-18T22:28:28+02:00".to_string()),
        Just("'2020-02-29T00:00:00'".to_string()),
    ];
    let quoted =
        any_text().prop_map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")));
    let value = prop_oneof![bare(), quoted];
    let list =
        prop::collection::vec(value.clone(), 1..4).prop_map(|v| format!("[{}]", v.join(", ")));
    let eq_ops = prop::sample::select(vec!["==", "!=", "equals", "not_equals"]);
    let ord_ops = prop::sample::select(vec!["==", "!=", ">", ">=", "<", "<=", "less_than"]);
    let set_ops = prop::sample::select(vec!["in", "!in", "not_in"]);
    let re_ops = prop::sample::select(vec!["=~", "!~", "matches"]);
    let pattern = prop::sample::select(vec!["t2.*", "'[a-z]+'", "'m5\\\\..*'", "'x|y'"]);
    let text_subject = prop_oneof![
        Just("ec2InstanceId".to_string()),
        Just("task:group".to_string()),
        bare().prop_map(|n| format!("attribute:{n}")),
    ];
    prop_oneof![
        (text_subject.clone(), eq_ops, value).prop_map(|(s, o, v)| format!("{s} {o} {v}")),
        (text_subject.clone(), set_ops, list).prop_map(|(s, o, v)| format!("{s} {o} {v}")),
        (text_subject, re_ops, pattern).prop_map(|(s, o, v)| format!("{s} {o} {v}")),
        (ord_ops.clone(), version).prop_map(|(o, v)| format!("agentVersion {o} {v}")),
        (ord_ops.clone(), date).prop_map(|(o, v)| format!("registeredAt {o} {v}")),
        (ord_ops, 0u32..100).prop_map(|(o, v)| format!("runningTasksCount {o} {v}")),
        prop::bool::ANY.prop_map(|b| format!("agentConnected == {b}")),
        (
            bare(),
            prop::sample::select(vec!["exists", "!exists", "not_exists"])
        )
            .prop_map(|(n, o)| format!("attribute:{n} {o}")),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    comparison().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["and", "or", "&&", "||", "AND"]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            inner.clone().prop_map(|a| format!("not({a})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

proptest! {
    #[test]
    fn printed_expressions_parse_back_to_the_same_tree(src in expression()) {
        let e = parse(&src).map_err(|err| TestCaseError::fail(format!("{src}: {err}")))?;
        let printed = e.to_string();
        let again = parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
        prop_assert_eq!(&again, &e);
        prop_assert_eq!(again.to_string(), printed);
    }

    #[test]
    fn garbage_never_panics(src in "\\PC{0,64}") {
        let _ = parse(&src);
    }

    #[test]
    fn token_soup_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "(", ")", "[", "]", ",", "==", "!", "!=", "=~", "exists", "in", "and", "or", "not", "'",
        "\"", "\\", "attribute:x", "task:group", "runningTasksCount", "1", "2018-01-01", "&&",
        "||", "<", ">=", " ", "é", "agentVersion", "1.2.3",
    ]), 0..24)) {
        let src = parts.concat();
        if let Ok(e) = parse(&src) {
            prop_assert_eq!(parse(&e.to_string()).ok(), Some(e));
        }
    }

    #[test]
    fn a_batch_never_oversubscribes_and_gives_up_only_when_nothing_fits(
        sizes in prop::collection::vec((0i64..4096, 0i64..8192, prop::bool::ANY, 0u8..3), 1..40),
        cpu in 0i64..1024,
        memory in 0i64..2048,
        port in prop::option::of(1u16..4),
        count in 1u32..60,
        distinct in prop::bool::ANY,
        first in 0usize..4,
        seed in 0u64..1000,
    ) {
        let fleet: Vec<Instance> = sizes.iter().enumerate().map(|(i, (c, m, ok, az))| Instance {
            id: i.to_string(),
            ec2_instance_id: format!("i-{i}"),
            agent_connected: *ok,
            can_run_tasks: true,
            agent_version: "1.0.0".into(),
            attributes: [("zone".to_string(), Some(format!("z{az}")))].into_iter().collect(),
            remaining: Resources { cpu: *c, memory: *m, free_dynamic_ports: 5, ..Resources::default() },
            ..Instance::default()
        }).collect();
        let strategies = [
            vec![Rank::Binpack(Resource::Memory)],
            vec![Rank::Binpack(Resource::Cpu), Rank::Random],
            vec![Rank::Spread(SpreadField::Attribute("zone".into())), Rank::Binpack(Resource::Memory)],
            vec![Rank::Random],
        ];
        let mut constraints = vec![Constraint::MemberOf(
            parse("attribute:zone != z2").map_err(|e| TestCaseError::fail(e.to_string()))?,
        )];
        if distinct {
            constraints.push(Constraint::DistinctInstance);
        }
        let req = TaskRequest {
            demand: Demand { cpu, memory, tcp_ports: port.into_iter().collect(), dynamic_ports: 1, ..Demand::default() },
            group: "g".into(),
            constraints,
            strategies: strategies[first].clone(),
            count,
        };
        let plan = place(&fleet, &req, &mut StdRng::seed_from_u64(seed))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(plan.placements.len() + plan.failures.len(), count as usize);
        let mut state: Vec<Resources> = fleet.iter().map(|i| i.remaining.clone()).collect();
        let mut used = vec![0u32; fleet.len()];
        for p in &plan.placements {
            let i = &fleet[p.instance];
            prop_assert!(i.agent_connected);
            prop_assert!(i.attribute("zone") != Some(Some("z2")));
            prop_assert!(!(distinct && used[p.instance] > 0));
            prop_assert_eq!(misfit(&state[p.instance], &req.demand), None);
            state[p.instance].take(&req.demand);
            used[p.instance] += 1;
        }
        if !plan.failures.is_empty() {
            for (k, i) in fleet.iter().enumerate() {
                let could = i.agent_connected
                    && i.attribute("zone") != Some(Some("z2"))
                    && !(distinct && used[k] > 0)
                    && misfit(&state[k], &req.demand).is_none();
                prop_assert!(!could, "instance {} could still take a task", k);
            }
        }
    }
}

proptest! {
    /// Small batches scan and large ones walk an index; both must choose the same instances.
    #[test]
    fn scan_and_index_paths_agree(
        sizes in prop::collection::vec((0i64..2048, 0i64..4096, 0u8..3), 1..60),
        memory in 1i64..512,
        tie_break_random in prop::bool::ANY,
    ) {
        let fleet: Vec<Instance> = sizes.iter().enumerate().map(|(i, (c, m, z))| Instance {
            id: i.to_string(),
            agent_connected: true,
            can_run_tasks: true,
            attributes: [("zone".to_string(), Some(format!("z{z}")))].into_iter().collect(),
            remaining: Resources { cpu: *c, memory: *m, free_dynamic_ports: 9, ..Resources::default() },
            ..Instance::default()
        }).collect();
        let mut strategies = vec![Rank::Binpack(Resource::Memory)];
        if tie_break_random {
            strategies.push(Rank::Random);
        }
        let member_of = Constraint::MemberOf(
            parse("attribute:zone != z0").map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        let req = |count| TaskRequest {
            demand: Demand { cpu: 64, memory, ..Demand::default() },
            group: "g".into(),
            constraints: vec![member_of.clone()],
            strategies: strategies.clone(),
            count,
        };
        let small = place(&fleet, &req(20), &mut StdRng::seed_from_u64(3)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let large = place(&fleet, &req(200), &mut StdRng::seed_from_u64(3)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let n = small.placements.len();
        prop_assert_eq!(&small.placements[..], &large.placements[..n.min(large.placements.len())]);
        if let Some(f) = small.failures.first() {
            prop_assert_eq!(Some(f.reason), large.failures.first().map(|f| f.reason));
        }
    }
}
