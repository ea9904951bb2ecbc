//! What the model cannot say about a service, as data: how to set up a fresh state that
//! requests can name, which read-only calls show the state, which Describe echoes which
//! Create, how to fill a list for its paginator, and which scenario drives each waiter.
//!
//! A new operation needs no entry here to be covered by the valid/invalid/protocol checks; an
//! entry only deepens what is checked (echo, paging, waiting). Adding a waiter scenario is one
//! line in [`Profile::waiter_scenarios`].

use crate::client::{Client, Response};
use crate::{Error, Result};
use serde_json::{Map, Value, json};

mod autoscaling;
mod cloudwatch;
pub mod logs;
pub mod secretsmanager;

/// Makes the fixture state every case starts from (after a reset) and returns bindings:
/// member name → value that "bound" requests use so they name resources that exist.
pub type SetupFn = fn(&Client) -> Result<Map<String, Value>>;

/// The read-only calls whose answers make up the state snapshot, given the bindings.
pub type SnapshotFn = fn(&Map<String, Value>) -> Vec<(&'static str, Value)>;

/// A Create/Register/Put and the Describe/List that must give back what it accepted.
#[derive(Debug, Clone)]
pub struct Echo {
    pub create: &'static str,
    pub describe: &'static str,
    /// `(identifier form, Describe body)` for each way AWS lets the created resource be named
    /// (name, full ARN, partial ARN, `family:revision`, …), from the create request, its
    /// response and `found`: what the Describe of the first form returned (`null` until then),
    /// for forms only a Describe tells (a log group's ARN). Each form is checked on its own.
    pub lookups: fn(request: &Value, response: &Value, found: &Value) -> Vec<(String, Value)>,
    /// The object in the Describe answer that must contain the request.
    pub pick: fn(request: &Value, describe: &Value) -> Option<Value>,
}

/// How to fill a list so its paginator spans several pages.
#[derive(Debug, Clone)]
pub struct PageFixture {
    pub op: &'static str,
    /// The List body every page is sent with (before the limit and token are added). A string
    /// `"{{Name}}"` in it stands for the binding `Name` of the fixture state (an ARN the server
    /// made, such as the fixture load balancer's).
    pub list_body: Value,
    pub count: usize,
    /// Creates item `i` (`0..count`), given the fixture state's bindings.
    pub create: fn(&Client, usize, &Map<String, Value>) -> Result<Response>,
}

/// The items one result of a page stands for (see [`Profile::page_items`]).
pub type PageItemsFn = fn(&Value) -> Vec<Value>;

/// Drives the service into a waiter's success state and returns the waiter's arguments
/// (boto3 keyword arguments, e.g. `{"cluster": "c", "services": ["s"]}`).
pub type WaiterScenario = fn(&Client) -> std::result::Result<Value, String>;

/// Everything service-specific the suite knows.
#[derive(Debug, Clone)]
pub struct Profile {
    /// botocore's directory name (`ecs`).
    pub service: &'static str,
    pub setup: Option<SetupFn>,
    pub snapshot: SnapshotFn,
    pub echoes: Vec<Echo>,
    pub page_fixtures: Vec<PageFixture>,
    /// Paginated operations no fixture can fill yet, with the reason (reported as not
    /// applicable).
    pub page_not_applicable: Vec<(&'static str, &'static str)>,
    /// Paginated operations whose pages split each result rather than the list of results
    /// (CloudWatch's GetMetricData pages datapoints): the items each result stands for.
    pub page_items: Vec<(&'static str, PageItemsFn)>,
    /// Members whose values change on their own, whatever the requests (the health a load
    /// balancer's checker observes): left out of state snapshots.
    pub volatile: Vec<&'static str>,
    /// Waiter name (as in `waiters-2.json`) → scenario.
    pub waiter_scenarios: Vec<(&'static str, WaiterScenario)>,
    /// Waiters no scenario can reach yet, with the reason (reported as not applicable).
    pub waiter_not_applicable: Vec<(&'static str, &'static str)>,
    /// Waiter name → a scenario that drives the state into one of the waiter's `failure`
    /// acceptors: boto3's wait must then stop with "terminal failure state", not time out.
    pub waiter_failures: Vec<(&'static str, WaiterScenario)>,
    /// Operation → the top-level members that name the resource it creates. Bound requests
    /// generate these anew (seeded, within the member's length and pattern) instead of taking
    /// the fixture's binding, which names a resource that exists already: a bound
    /// CreateLogGroup would otherwise only ever meet `ResourceAlreadyExistsException`.
    pub fresh_names: Vec<(&'static str, &'static [&'static str])>,
    /// `(create, member, why)`: members a create accepts that its Describe does not give back
    /// yet, though the answer's shape has them. Reported once each as not applicable instead of
    /// failing every echo; any other dropped member fails.
    pub echo_unreturned: Vec<(&'static str, &'static str, &'static str)>,
}

impl Profile {
    /// A profile with nothing service-specific: no set-up, an empty snapshot.
    pub fn bare(service: &'static str) -> Profile {
        Profile {
            service,
            setup: None,
            snapshot: |_| Vec::new(),
            echoes: Vec::new(),
            page_fixtures: Vec::new(),
            page_not_applicable: Vec::new(),
            page_items: Vec::new(),
            volatile: Vec::new(),
            waiter_scenarios: Vec::new(),
            waiter_not_applicable: Vec::new(),
            waiter_failures: Vec::new(),
            fresh_names: Vec::new(),
            echo_unreturned: Vec::new(),
        }
    }

    /// ECS.
    pub fn ecs() -> Profile {
        Profile {
            service: "ecs",
            setup: Some(ecs_setup),
            snapshot: ecs_snapshot,
            echoes: vec![
                Echo {
                    create: "CreateCluster",
                    describe: "DescribeClusters",
                    lookups: |_, resp, _| {
                        let include = json!(["SETTINGS", "TAGS", "CONFIGURATIONS"]);
                        let c = &resp["cluster"];
                        vec![
                            (
                                "name".into(),
                                json!({"clusters": [c["clusterName"]], "include": include}),
                            ),
                            (
                                "full ARN".into(),
                                json!({"clusters": [c["clusterArn"]], "include": include}),
                            ),
                        ]
                    },
                    pick: |_, d| d["clusters"].get(0).cloned(),
                },
                Echo {
                    create: "RegisterTaskDefinition",
                    describe: "DescribeTaskDefinition",
                    lookups: |_, resp, _| {
                        let td = &resp["taskDefinition"];
                        let family = td["family"].as_str().unwrap_or_default();
                        let rev = td["revision"].as_i64().unwrap_or_default();
                        vec![
                            (
                                "family:revision".into(),
                                json!({"taskDefinition": format!("{family}:{rev}"), "include": ["TAGS"]}),
                            ),
                            (
                                "family (latest)".into(),
                                json!({"taskDefinition": family, "include": ["TAGS"]}),
                            ),
                            (
                                "full ARN".into(),
                                json!({"taskDefinition": td["taskDefinitionArn"], "include": ["TAGS"]}),
                            ),
                        ]
                    },
                    // Tags come back beside the task definition, not inside it.
                    pick: |_, d| {
                        let mut td = d.get("taskDefinition")?.clone();
                        if let Some(tags) = d.get("tags") {
                            td["tags"] = tags.clone();
                        }
                        Some(td)
                    },
                },
                Echo {
                    create: "CreateService",
                    describe: "DescribeServices",
                    // A service is named within its cluster, and the cluster by name or ARN.
                    lookups: |req, resp, _| {
                        let svc = &resp["service"];
                        let cluster = req.get("cluster").cloned().unwrap_or(json!("default"));
                        let mut forms = Vec::new();
                        for (cluster_form, cluster) in [
                            ("", cluster),
                            (", cluster by ARN", svc["clusterArn"].clone()),
                        ] {
                            for (form, id) in [
                                ("name", &svc["serviceName"]),
                                ("full ARN", &svc["serviceArn"]),
                            ] {
                                forms.push((
                                    format!("{form}{cluster_form}"),
                                    json!({"cluster": cluster, "services": [id], "include": ["TAGS"]}),
                                ));
                            }
                        }
                        forms
                    },
                    pick: |_, d| d["services"].get(0).cloned(),
                },
                Echo {
                    create: "CreateCapacityProvider",
                    describe: "DescribeCapacityProviders",
                    lookups: |_, resp, _| {
                        let cp = &resp["capacityProvider"];
                        vec![
                            (
                                "name".into(),
                                json!({"capacityProviders": [cp["name"]], "include": ["TAGS"]}),
                            ),
                            (
                                "full ARN".into(),
                                json!({"capacityProviders": [cp["capacityProviderArn"]], "include": ["TAGS"]}),
                            ),
                        ]
                    },
                    pick: |_, d| d["capacityProviders"].get(0).cloned(),
                },
                Echo {
                    create: "PutAccountSetting",
                    describe: "ListAccountSettings",
                    lookups: |req, _, _| {
                        let mut body = json!({"name": req["name"]});
                        if let Some(p) = req.get("principalArn") {
                            body["principalArn"] = p.clone();
                        }
                        vec![("name".into(), body)]
                    },
                    pick: |req, d| {
                        d["settings"]
                            .as_array()?
                            .iter()
                            .find(|s| s["name"] == req["name"])
                            .cloned()
                    },
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "ListServices",
                    list_body: json!({"cluster": "conformance"}),
                    count: 7,
                    create: |c, i, _| c.call("CreateService", &service(&format!("page-{i}"))),
                },
                PageFixture {
                    op: "ListServiceDeployments",
                    list_body: json!({"cluster": "conformance", "service": "paged"}),
                    count: 7,
                    create: |c, i, _| {
                        if i == 0 {
                            c.call("CreateService", &service("paged"))
                        } else {
                            c.call(
                                "UpdateService",
                                &json!({"cluster": "conformance", "service": "paged",
                                        "forceNewDeployment": true}),
                            )
                        }
                    },
                },
                PageFixture {
                    op: "ListClusters",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "CreateCluster",
                            &json!({"clusterName": format!("page-{i}")}),
                        )
                    },
                },
                PageFixture {
                    op: "ListTaskDefinitions",
                    list_body: json!({}),
                    count: 7,
                    create: |c, _, _| c.call("RegisterTaskDefinition", &task_definition("page")),
                },
                PageFixture {
                    op: "ListTaskDefinitionFamilies",
                    list_body: json!({"status": "ALL"}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "RegisterTaskDefinition",
                            &task_definition(&format!("page-{i}")),
                        )
                    },
                },
                PageFixture {
                    op: "ListAccountSettings",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        const SETTINGS: [(&str, &str); 7] = [
                            ("serviceLongArnFormat", "enabled"),
                            ("taskLongArnFormat", "enabled"),
                            ("containerInstanceLongArnFormat", "enabled"),
                            ("awsvpcTrunking", "enabled"),
                            ("containerInsights", "enhanced"),
                            ("tagResourceAuthorization", "on"),
                            ("defaultLogDriverMode", "blocking"),
                        ];
                        let (name, value) = SETTINGS[i % SETTINGS.len()];
                        c.call("PutAccountSetting", &json!({"name": name, "value": value}))
                    },
                },
                PageFixture {
                    op: "ListContainerInstances",
                    list_body: json!({"cluster": "conformance"}),
                    count: 7,
                    create: |c, _, _| c.call("RegisterContainerInstance", &container_instance()),
                },
                PageFixture {
                    op: "ListTasks",
                    list_body: json!({"cluster": "conformance"}),
                    count: 7,
                    create: |c, i, _| {
                        // One instance with room for every task of the fixture.
                        if i == 0 {
                            let r = c.call("RegisterContainerInstance", &container_instance())?;
                            if r.status != 200 {
                                return Ok(r);
                            }
                        }
                        c.call(
                            "RunTask",
                            &json!({"cluster": "conformance", "taskDefinition": "conformance:1"}),
                        )
                    },
                },
                PageFixture {
                    op: "ListAttributes",
                    list_body: json!({"cluster": "conformance", "targetType": "container-instance"}),
                    count: 7,
                    create: |c, i, _| {
                        let r = c.call("RegisterContainerInstance", &container_instance())?;
                        let Some(arn) = r.json().and_then(|v| {
                            v["containerInstance"]["containerInstanceArn"]
                                .as_str()
                                .map(str::to_string)
                        }) else {
                            return Ok(r);
                        };
                        c.call(
                            "PutAttributes",
                            &json!({"cluster": "conformance", "attributes": [
                                {"name": format!("page-{i}"), "value": "v", "targetId": arn}
                            ]}),
                        )
                    },
                },
            ],
            page_not_applicable: vec![],
            page_items: vec![],
            volatile: vec![],
            echo_unreturned: vec![],
            // Each drives the state into a failure acceptor: a task that stopped, a service
            // deleted (INACTIVE), a service that never was (MISSING).
            waiter_failures: vec![
                ("TasksRunning", |c| agent_task(c, &["RUNNING", "STOPPED"])),
                ("ServicesStable", services_inactive),
                ("ServicesInactive", |_| {
                    Ok(json!({"cluster": "conformance", "services": ["never-created"]}))
                }),
            ],
            fresh_names: vec![],
            waiter_not_applicable: vec![],
            waiter_scenarios: vec![
                ("TasksRunning", |c| agent_task(c, &["RUNNING"])),
                ("TasksStopped", |c| agent_task(c, &["RUNNING", "STOPPED"])),
                ("ServicesStable", services_stable),
                ("ServicesInactive", services_inactive),
            ],
        }
    }
}

/// A container instance as the ECS API registers one, in the fixture cluster, with room for
/// every fixture task.
pub fn container_instance() -> Value {
    json!({
        "cluster": "conformance",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 65536},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 65536}
        ]
    })
}

/// The join token the suites start berth with, so a scenario can act as a node agent.
pub const AGENT_JOIN_TOKEN: &str = "berth-conformance-join-token";

/// The JSON of a 200 answer, or what went wrong.
fn ok_json(r: Response, what: &str) -> std::result::Result<Value, String> {
    r.json()
        .filter(|_| r.status == 200)
        .ok_or_else(|| format!("{what} failed: {} {}", r.status, r.text()))
}

/// A cluster named `cluster`, a task definition of the same family, and a node this scenario
/// plays the agent of, joined to the cluster: the node's registration answer.
fn agent_node(c: &Client, cluster: &str) -> std::result::Result<Value, String> {
    use berth_agent_api as agent;
    let text = |e: Error| e.to_string();
    ok_json(
        c.call("CreateCluster", &json!({"clusterName": cluster}))
            .map_err(text)?,
        "CreateCluster",
    )?;
    ok_json(
        c.call("RegisterTaskDefinition", &task_definition(cluster))
            .map_err(text)?,
        "RegisterTaskDefinition",
    )?;
    ok_json(
        c.post_json(
            agent::REGISTER,
            None,
            &json!({"cluster": cluster, "join_token": AGENT_JOIN_TOKEN,
                    "resources": {"cpu": 1024, "memory_mib": 1024},
                    "version": {"agent_version": "conformance"},
                    "can_run_tasks": true, "host_id": format!("conformance-{cluster}")}),
        )
        .map_err(text)?,
        "agent register",
    )
}

/// Runs a task on a node this scenario plays the agent of, reporting `statuses` in order, and
/// returns the waiter arguments naming it.
fn agent_task(c: &Client, statuses: &[&str]) -> std::result::Result<Value, String> {
    use berth_agent_api as agent;
    let text = |e: Error| e.to_string();
    let node = agent_node(c, "waiters")?;
    let ok = |r: Response, what: &str| ok_json(r, what);
    let run = ok(
        c.call(
            "RunTask",
            &json!({"cluster": "waiters", "taskDefinition": "waiters"}),
        )
        .map_err(text)?,
        "RunTask",
    )?;
    let arn = run["tasks"][0]["taskArn"].clone();
    let token = node["node_token"].as_str().unwrap_or_default();
    for status in statuses {
        ok(
            c.post_json(
                agent::STATE,
                Some(token),
                &json!({"instance_id": node["instance_id"],
                        "tasks": [{"task_arn": arn, "status": status}]}),
            )
            .map_err(text)?,
            "agent state report",
        )?;
    }
    Ok(json!({"cluster": "waiters", "tasks": [arn]}))
}

/// A service of the fixture task definition in the fixture cluster, with no task wanted (no
/// node runs tasks there).
pub fn service(name: &str) -> Value {
    json!({"cluster": "conformance", "serviceName": name,
           "taskDefinition": "conformance:1", "desiredCount": 0})
}

/// Polls DescribeServices until `done` holds for the service (the controller acts on its own
/// time), at most ~10 s.
fn await_service(
    c: &Client,
    cluster: &str,
    service: &str,
    done: fn(&Value) -> bool,
) -> std::result::Result<Value, String> {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = c
            .call(
                "DescribeServices",
                &json!({"cluster": cluster, "services": [service]}),
            )
            .map_err(|e| e.to_string())?;
        last = r.json().unwrap_or_default();
        if r.status == 200 && done(&last["services"][0]) {
            return Ok(last["services"][0].clone());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!(
        "service {service} never reached the state wanted: {last}"
    ))
}

/// A service of one task on a node this scenario plays the agent of: the controller places the
/// task, the "agent" reports it RUNNING.
fn services_stable(c: &Client) -> std::result::Result<Value, String> {
    use berth_agent_api as agent;
    let text = |e: Error| e.to_string();
    let ok = |r: Response, what: &str| ok_json(r, what);
    let node = agent_node(c, "stable")?;
    ok(
        c.call(
            "CreateService",
            &json!({"cluster": "stable", "serviceName": "stable",
                    "taskDefinition": "stable", "desiredCount": 1}),
        )
        .map_err(text)?,
        "CreateService",
    )?;
    let mut arn = Value::Null;
    for _ in 0..200 {
        let list = ok(
            c.call(
                "ListTasks",
                &json!({"cluster": "stable", "serviceName": "stable"}),
            )
            .map_err(text)?,
            "ListTasks",
        )?;
        if let Some(a) = list["taskArns"].get(0) {
            arn = a.clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if arn.is_null() {
        return Err("the service controller placed no task".into());
    }
    let token = node["node_token"].as_str().unwrap_or_default();
    ok(
        c.post_json(
            agent::STATE,
            Some(token),
            &json!({"instance_id": node["instance_id"],
                    "tasks": [{"task_arn": arn, "status": "RUNNING"}]}),
        )
        .map_err(text)?,
        "agent state report",
    )?;
    Ok(json!({"cluster": "stable", "services": ["stable"]}))
}

/// A service with no task, deleted: the controller makes it INACTIVE.
fn services_inactive(c: &Client) -> std::result::Result<Value, String> {
    let r = c
        .call("CreateService", &service("gone"))
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("CreateService failed: {}", r.text()));
    }
    let r = c
        .call(
            "DeleteService",
            &json!({"cluster": "conformance", "service": "gone"}),
        )
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("DeleteService failed: {}", r.text()));
    }
    await_service(c, "conformance", "gone", |s| s["status"] == "INACTIVE")?;
    Ok(json!({"cluster": "conformance", "services": ["gone"]}))
}

/// The smallest task definition ECS accepts.
pub fn task_definition(family: &str) -> Value {
    json!({
        "family": family,
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 128}]
    })
}

/// A fixture cluster and task definition, and bindings that name them.
fn ecs_setup(c: &Client) -> Result<Map<String, Value>> {
    let cluster = c.call("CreateCluster", &json!({"clusterName": "conformance"}))?;
    let cluster = cluster
        .json()
        .filter(|_| cluster.status == 200)
        .ok_or_else(|| Error::Other(format!("fixture CreateCluster failed: {}", cluster.text())))?;
    let cluster_arn = cluster["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default();
    let account = cluster_arn.split(':').nth(4).unwrap_or_default();
    let td = c.call("RegisterTaskDefinition", &task_definition("conformance"))?;
    if td.status != 200 {
        return Err(Error::Other(format!(
            "fixture RegisterTaskDefinition failed: {}",
            td.text()
        )));
    }
    let created = c.call("CreateService", &service("conformance"))?;
    let created = created
        .json()
        .filter(|_| created.status == 200)
        .ok_or_else(|| Error::Other(format!("fixture CreateService failed: {}", created.text())))?;
    // The controller completes the fixture's first deployment on its own: wait for it, so no
    // snapshot sees it happen.
    await_service(c, "conformance", "conformance", |s| {
        s["deployments"][0]["rolloutState"] == "COMPLETED"
    })
    .map_err(Error::Other)?;
    let deployment_arn = created["service"]["currentServiceDeployment"].clone();
    let described = c.call(
        "DescribeServiceDeployments",
        &json!({"serviceDeploymentArns": [deployment_arn]}),
    )?;
    let revision_arn = described.json().unwrap_or_default()["serviceDeployments"][0]
        ["targetServiceRevision"]["arn"]
        .clone();
    let role = format!("arn:aws:iam::{account}:role/conformance");
    let bindings = json!({
        "cluster": "conformance",
        "resourceArn": cluster_arn,
        "taskDefinition": "conformance:1",
        "taskDefinitions": ["conformance:1"],
        "service": "conformance",
        "services": ["conformance"],
        "serviceDeploymentArn": deployment_arn,
        "serviceDeploymentArns": [deployment_arn],
        "serviceRevisionArns": [revision_arn],
        // Features berth refuses (UnsupportedFeatureException) are left out of bound requests,
        // so they reach the service's own rules and the echo check.
        "serviceRegistries": null,
        "serviceConnectConfiguration": null,
        "volumeConfigurations": null,
        "vpcLatticeConfigurations": null,
        "deploymentController": null,
        "capacityProviderStrategy": null,
        "platformVersion": null,
        "loadBalancers": null,
        "placementConstraints": null,
        "placementStrategy": null,
        "launchType": "EC2",
        "schedulingStrategy": "REPLICA",
        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
            "deploymentCircuitBreaker": {"enable": true, "rollback": false}},
        "capacityProviders": ["FARGATE"],
        // A strategy over the bound providers with one base, as ECS requires.
        "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
        "capacityProvider": "FARGATE",
        "principalArn": format!("arn:aws:iam::{account}:root"),
        "taskRoleArn": role,
        "executionRoleArn": role,
        "image": "busybox",
        // A container definition ECS accepts, so bound requests get past ECS's own rules and
        // reach the write.
        "containerDefinitions": task_definition("x")["containerDefinitions"],
        "cpu": "256",
        "memory": "512",
        "value": "enabled",
        // ECS takes exactly one of the two providers; bound requests send the ASG one.
        "managedInstancesProvider": null,
        "autoScalingGroupArn": format!(
            "arn:aws:autoscaling:{}:{account}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/conformance",
            c.region
        ),
    });
    Ok(bindings.as_object().cloned().unwrap_or_default())
}

/// The read-only ECS calls that show everything the implemented operations can write.
fn ecs_snapshot(b: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let mut calls = vec![
        ("ListClusters", json!({})),
        ("ListTaskDefinitions", json!({"status": "ACTIVE"})),
        ("ListTaskDefinitions", json!({"status": "INACTIVE"})),
        (
            "ListTaskDefinitions",
            json!({"status": "DELETE_IN_PROGRESS"}),
        ),
        ("ListTaskDefinitionFamilies", json!({"status": "ALL"})),
        ("ListAccountSettings", json!({})),
        ("ListAccountSettings", json!({"effectiveSettings": true})),
        ("DescribeCapacityProviders", json!({"include": ["TAGS"]})),
    ];
    // The fixture resources in detail, so an invalid update or tag call that slipped through
    // shows up too.
    if let Some(cluster) = b.get("cluster") {
        calls.push((
            "DescribeClusters",
            json!({"clusters": [cluster], "include": ["ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"]}),
        ));
    }
    if let Some(cluster) = b.get("cluster") {
        calls.push(("ListContainerInstances", json!({"cluster": cluster})));
        calls.push((
            "ListContainerInstances",
            json!({"cluster": cluster, "status": "DRAINING"}),
        ));
        calls.push(("ListTasks", json!({"cluster": cluster})));
        calls.push(("ListServices", json!({"cluster": cluster})));
        calls.push((
            "DescribeServices",
            json!({"cluster": cluster, "services": ["conformance"], "include": ["TAGS"]}),
        ));
        calls.push((
            "ListServiceDeployments",
            json!({"cluster": cluster, "service": "conformance"}),
        ));
        calls.push((
            "ListTasks",
            json!({"cluster": cluster, "desiredStatus": "STOPPED"}),
        ));
    }
    if let Some(td) = b.get("taskDefinition") {
        calls.push((
            "DescribeTaskDefinition",
            json!({"taskDefinition": td, "include": ["TAGS"]}),
        ));
    }
    if let Some(arn) = b.get("resourceArn") {
        calls.push(("ListTagsForResource", json!({"resourceArn": arn})));
    }
    calls
}

impl Profile {
    /// ECR: a fixture repository holding one tagged image (an empty OCI index, which needs no
    /// blobs), and page fixtures for the repository and image lists.
    pub fn ecr() -> Profile {
        Profile {
            service: "ecr",
            setup: Some(ecr_setup),
            snapshot: |b| {
                let mut calls = vec![("DescribeRepositories", json!({}))];
                if let Some(repo) = b.get("repositoryName") {
                    calls.push(("ListImages", json!({"repositoryName": repo})));
                    calls.push(("DescribeImages", json!({"repositoryName": repo})));
                    calls.push(("GetRepositoryPolicy", json!({"repositoryName": repo})));
                    calls.push(("GetLifecyclePolicy", json!({"repositoryName": repo})));
                    calls.push(("GetLifecyclePolicyPreview", json!({"repositoryName": repo})));
                }
                if let Some(arn) = b.get("resourceArn") {
                    calls.push(("ListTagsForResource", json!({"resourceArn": arn})));
                }
                calls
            },
            // ECR names a repository by name only, within a registry: the caller's by default,
            // or named by `registryId` (the account).
            echoes: vec![
                Echo {
                    create: "CreateRepository",
                    describe: "DescribeRepositories",
                    lookups: |_, resp, _| ecr_repository_forms(&resp["repository"]),
                    pick: |_, d| d["repositories"].get(0).cloned(),
                },
                Echo {
                    create: "PutImageTagMutability",
                    describe: "DescribeRepositories",
                    lookups: |_, resp, _| ecr_repository_forms(resp),
                    pick: |_, d| d["repositories"].get(0).cloned(),
                },
                Echo {
                    create: "PutLifecyclePolicy",
                    describe: "GetLifecyclePolicy",
                    lookups: |_, resp, _| ecr_repository_named(resp),
                    pick: |_, d| Some(d.clone()).filter(|d| d.get("lifecyclePolicyText").is_some()),
                },
                Echo {
                    create: "SetRepositoryPolicy",
                    describe: "GetRepositoryPolicy",
                    lookups: |_, resp, _| ecr_repository_named(resp),
                    pick: |_, d| Some(d.clone()).filter(|d| d.get("policyText").is_some()),
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "DescribeRepositories",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "CreateRepository",
                            &json!({"repositoryName": format!("page-{i}")}),
                        )
                    },
                },
                PageFixture {
                    op: "ListImages",
                    list_body: json!({"repositoryName": "conformance"}),
                    count: 7,
                    create: |c, i, _| c.call("PutImage", &ecr_image(&format!("page-{i}"))),
                },
                PageFixture {
                    op: "DescribeImages",
                    list_body: json!({"repositoryName": "conformance"}),
                    count: 7,
                    create: |c, i, _| c.call("PutImage", &ecr_image(&format!("page-{i}"))),
                },
                // Seven images besides the fixture's, then a preview of a policy that keeps
                // only the newest: seven results to page through.
                PageFixture {
                    op: "GetLifecyclePolicyPreview",
                    list_body: json!({"repositoryName": "conformance"}),
                    count: 7,
                    create: |c, i, _| {
                        let put = c.call("PutImage", &ecr_image(&format!("page-{i}")))?;
                        if i < 6 || put.status != 200 {
                            return Ok(put);
                        }
                        c.call("StartLifecyclePolicyPreview", &ecr_keep_newest_preview())
                    },
                },
            ],
            page_not_applicable: vec![],
            page_items: vec![],
            volatile: vec![],
            waiter_failures: vec![],
            fresh_names: vec![("CreateRepository", &["repositoryName"])],
            echo_unreturned: vec![],
            waiter_not_applicable: vec![],
            waiter_scenarios: vec![("LifecyclePolicyPreviewComplete", |c| {
                let r = c
                    .call("StartLifecyclePolicyPreview", &ecr_keep_newest_preview())
                    .map_err(|e| e.to_string())?;
                if r.status != 200 {
                    return Err(format!("StartLifecyclePolicyPreview: {}", r.text()));
                }
                Ok(json!({"repositoryName": "conformance"}))
            })],
        }
    }
}

/// DescribeRepositories bodies naming the repository `answer` describes (a CreateRepository's
/// `repository`, a PutImageTagMutability answer): by name, and by name in its registry.
fn ecr_repository_forms(answer: &Value) -> Vec<(String, Value)> {
    let name = &answer["repositoryName"];
    vec![
        ("name".into(), json!({"repositoryNames": [name]})),
        (
            "name and registryId".into(),
            json!({"repositoryNames": [name], "registryId": answer["registryId"]}),
        ),
    ]
}

/// Bodies naming one repository by `repositoryName`, alone and with its `registryId`, as an
/// answer that names it gives them.
fn ecr_repository_named(answer: &Value) -> Vec<(String, Value)> {
    let name = &answer["repositoryName"];
    vec![
        ("name".into(), json!({"repositoryName": name})),
        (
            "name and registryId".into(),
            json!({"repositoryName": name, "registryId": answer["registryId"]}),
        ),
    ]
}

/// A StartLifecyclePolicyPreview body for the fixture repository: a policy that keeps only the
/// newest image.
fn ecr_keep_newest_preview() -> Value {
    let policy = json!({"rules": [{
        "rulePriority": 1,
        "description": "keep the newest image",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"},
    }]});
    json!({"repositoryName": "conformance", "lifecyclePolicyText": policy.to_string()})
}

/// A PutImage body for the fixture repository: an empty OCI index tagged (and made unique) by
/// `tag`.
fn ecr_image(tag: &str) -> Value {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"tag": tag},
    });
    json!({
        "repositoryName": "conformance",
        "imageTag": tag,
        "imageManifest": manifest.to_string(),
    })
}

fn ecr_setup(c: &Client) -> Result<Map<String, Value>> {
    let repo = c.call(
        "CreateRepository",
        &json!({"repositoryName": "conformance"}),
    )?;
    let repo = repo
        .json()
        .filter(|_| repo.status == 200)
        .ok_or_else(|| Error::Other(format!("fixture CreateRepository failed: {}", repo.text())))?;
    let image = c.call("PutImage", &ecr_image("bound"))?;
    if image.status != 200 {
        return Err(Error::Other(format!(
            "fixture PutImage failed: {}",
            image.text()
        )));
    }
    let bindings = json!({
        "repositoryName": "conformance",
        // The account's own registry: a generated one is another account's, which ECR refuses.
        "registryId": repo["repository"]["registryId"],
        // The mutability that takes the exclusion filters a maximal request carries.
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        // Policies ECR accepts (generated text is not JSON), so bound puts reach the write.
        "lifecyclePolicyText": ecr_keep_newest_preview()["lifecyclePolicyText"],
        "policyText": json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "conformance", "Effect": "Allow", "Principal": "*",
            "Action": ["ecr:BatchGetImage"]}]}).to_string(),
        "resourceArn": repo["repository"]["repositoryArn"],
        "imageTag": "bound",
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}

impl Profile {
    /// Elastic Load Balancing v2 (awsQuery).
    pub fn elbv2() -> Profile {
        Profile {
            service: "elbv2",
            setup: Some(elbv2_setup),
            snapshot: |b| {
                let mut calls = vec![
                    ("DescribeLoadBalancers", json!({})),
                    ("DescribeTargetGroups", json!({})),
                    ("DescribeAccountLimits", json!({})),
                ];
                if let Some(lb) = b.get("LoadBalancerArn") {
                    calls.push(("DescribeListeners", json!({"LoadBalancerArn": lb})));
                    calls.push((
                        "DescribeLoadBalancerAttributes",
                        json!({"LoadBalancerArn": lb}),
                    ));
                }
                if let Some(l) = b.get("ListenerArn") {
                    calls.push(("DescribeRules", json!({"ListenerArn": l})));
                }
                if let Some(tg) = b.get("TargetGroupArn") {
                    calls.push(("DescribeTargetHealth", json!({"TargetGroupArn": tg})));
                    calls.push((
                        "DescribeTargetGroupAttributes",
                        json!({"TargetGroupArn": tg}),
                    ));
                }
                if let Some(arns) = b.get("ResourceArns") {
                    calls.push(("DescribeTags", json!({"ResourceArns": arns})));
                }
                calls
            },
            // ELBv2 names load balancers and target groups by name or ARN, listeners and
            // rules by ARN only (or through their parent's ARN).
            echoes: vec![
                Echo {
                    create: "CreateTargetGroup",
                    describe: "DescribeTargetGroups",
                    lookups: |_, resp, _| {
                        let tg = &resp["TargetGroups"][0];
                        vec![
                            ("name".into(), json!({"Names": [tg["TargetGroupName"]]})),
                            (
                                "ARN".into(),
                                json!({"TargetGroupArns": [tg["TargetGroupArn"]]}),
                            ),
                        ]
                    },
                    pick: |_, d| d["TargetGroups"].get(0).cloned(),
                },
                Echo {
                    create: "CreateLoadBalancer",
                    describe: "DescribeLoadBalancers",
                    lookups: |_, resp, _| {
                        let lb = &resp["LoadBalancers"][0];
                        vec![
                            ("name".into(), json!({"Names": [lb["LoadBalancerName"]]})),
                            (
                                "ARN".into(),
                                json!({"LoadBalancerArns": [lb["LoadBalancerArn"]]}),
                            ),
                        ]
                    },
                    pick: |_, d| d["LoadBalancers"].get(0).cloned(),
                },
                Echo {
                    create: "CreateListener",
                    describe: "DescribeListeners",
                    lookups: |_, resp, _| {
                        let l = &resp["Listeners"][0];
                        vec![
                            ("ARN".into(), json!({"ListenerArns": [l["ListenerArn"]]})),
                            (
                                "load balancer ARN".into(),
                                json!({"LoadBalancerArn": l["LoadBalancerArn"]}),
                            ),
                        ]
                    },
                    // Through its load balancer every listener comes: the one on the port.
                    pick: |req, d| {
                        let listeners = d["Listeners"].as_array()?;
                        match req.get("Port") {
                            Some(port) => listeners.iter().find(|l| l["Port"] == *port).cloned(),
                            None => listeners.first().cloned(),
                        }
                    },
                },
                Echo {
                    create: "CreateRule",
                    describe: "DescribeRules",
                    lookups: |_, resp, _| {
                        let r = &resp["Rules"][0];
                        vec![("ARN".into(), json!({"RuleArns": [r["RuleArn"]]}))]
                    },
                    // The model gives a rule's priority as text in answers, a number in
                    // requests: compared as the number.
                    pick: |_, d| {
                        let mut rule = d["Rules"].get(0)?.clone();
                        if let Some(n) = rule["Priority"]
                            .as_str()
                            .and_then(|p| p.parse::<i64>().ok())
                        {
                            rule["Priority"] = json!(n);
                        }
                        Some(rule)
                    },
                },
            ],
            page_fixtures: vec![
                PageFixture {
                    op: "DescribeLoadBalancers",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call("CreateLoadBalancer", &json!({"Name": format!("page-{i}")}))
                    },
                },
                PageFixture {
                    op: "DescribeTargetGroups",
                    list_body: json!({}),
                    count: 7,
                    create: |c, i, _| {
                        c.call(
                            "CreateTargetGroup",
                            &json!({"Name": format!("page-{i}"), "Protocol": "HTTP", "Port": 80}),
                        )
                    },
                },
                // Listeners of the fixture load balancer, on loopback ports nothing else uses.
                PageFixture {
                    op: "DescribeListeners",
                    list_body: json!({"LoadBalancerArn": "{{LoadBalancerArn}}"}),
                    count: 7,
                    create: |c, i, b| {
                        c.call(
                            "CreateListener",
                            &json!({"LoadBalancerArn": b["LoadBalancerArn"], "Protocol": "HTTP",
                                    "Port": 41_870 + i,
                                    "DefaultActions": [{"Type": "fixed-response",
                                        "FixedResponseConfig": {"StatusCode": "200"}}]}),
                        )
                    },
                },
                PageFixture {
                    op: "DescribeRules",
                    list_body: json!({"ListenerArn": "{{ListenerArn}}"}),
                    count: 7,
                    create: |c, i, b| {
                        c.call(
                            "CreateRule",
                            &json!({"ListenerArn": b["ListenerArn"], "Priority": 100 + i,
                                    "Conditions": [{"Field": "path-pattern",
                                                    "Values": [format!("/page-{i}/*")]}],
                                    "Actions": [{"Type": "fixed-response",
                                        "FixedResponseConfig": {"StatusCode": "200"}}]}),
                        )
                    },
                },
                // Eight limits are always there; nothing to create.
                PageFixture {
                    op: "DescribeAccountLimits",
                    list_body: json!({}),
                    count: 1,
                    create: |c, _, _| c.call("DescribeAccountLimits", &json!({})),
                },
            ],
            page_items: vec![],
            // The load balancer's health checker moves the fixture target through its
            // states (initial → unhealthy) on its own time.
            volatile: vec!["TargetHealth"],
            page_not_applicable: vec![],
            waiter_scenarios: vec![
                ("LoadBalancerAvailable", |c| {
                    elbv2_create_lb(c, "waited")?;
                    Ok(json!({"Names": ["waited"]}))
                }),
                ("LoadBalancerExists", |c| {
                    elbv2_create_lb(c, "waited")?;
                    Ok(json!({"Names": ["waited"]}))
                }),
                ("LoadBalancersDeleted", |c| {
                    let arn = elbv2_create_lb(c, "deleted")?;
                    let r = c
                        .call("DeleteLoadBalancer", &json!({"LoadBalancerArn": arn}))
                        .map_err(|e| e.to_string())?;
                    if r.status != 200 {
                        return Err(format!("DeleteLoadBalancer: {}", r.text()));
                    }
                    Ok(json!({"LoadBalancerArns": [arn]}))
                }),
                ("TargetInService", elbv2_target_in_service),
                ("TargetDeregistered", |c| {
                    let r = c
                        .call(
                            "CreateTargetGroup",
                            &json!({"Name": "deregistered", "Protocol": "HTTP", "Port": 80}),
                        )
                        .map_err(|e| e.to_string())?;
                    let tg = r
                        .json()
                        .filter(|_| r.status == 200)
                        .and_then(|v| {
                            v["TargetGroups"][0]["TargetGroupArn"]
                                .as_str()
                                .map(String::from)
                        })
                        .ok_or_else(|| format!("CreateTargetGroup: {}", r.text()))?;
                    let targets = json!([{"Id": "i-0123456789abcdef0"}]);
                    for op in ["RegisterTargets", "DeregisterTargets"] {
                        let r = c
                            .call(op, &json!({"TargetGroupArn": tg, "Targets": targets}))
                            .map_err(|e| e.to_string())?;
                        if r.status != 200 {
                            return Err(format!("{op}: {}", r.text()));
                        }
                    }
                    Ok(json!({"TargetGroupArn": tg, "Targets": targets}))
                }),
            ],
            waiter_failures: vec![],
            fresh_names: vec![],
            echo_unreturned: vec![],
            waiter_not_applicable: vec![],
        }
    }
}

/// A target the load balancer's health checker finds healthy: berth's own endpoint on
/// loopback, as an `ip` target of a group a listener forwards to, whose check takes any answer
/// below 500 (berth answers `/` with a 4xx).
fn elbv2_target_in_service(c: &Client) -> std::result::Result<Value, String> {
    let call = |op: &str, body: Value| -> std::result::Result<Value, String> {
        ok_json(c.call(op, &body).map_err(|e| e.to_string())?, op)
    };
    let lb = elbv2_create_lb(c, "in-service")?;
    let tg = call(
        "CreateTargetGroup",
        json!({"Name": "in-service", "Protocol": "HTTP", "Port": c.addr.port(),
               "TargetType": "ip", "HealthCheckPath": "/", "HealthCheckIntervalSeconds": 5,
               "HealthCheckTimeoutSeconds": 2, "HealthyThresholdCount": 2,
               "Matcher": {"HttpCode": "200-499"}}),
    )?;
    let tg = tg["TargetGroups"][0]["TargetGroupArn"].clone();
    call(
        "CreateListener",
        json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 41_899,
               "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
    )?;
    let targets = json!([{"Id": c.addr.ip().to_string(), "Port": c.addr.port()}]);
    call(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": targets}),
    )?;
    Ok(json!({"TargetGroupArn": tg, "Targets": targets}))
}

fn elbv2_create_lb(c: &Client, name: &str) -> std::result::Result<String, String> {
    let r = c
        .call("CreateLoadBalancer", &json!({"Name": name}))
        .map_err(|e| e.to_string())?;
    r.json()
        .filter(|_| r.status == 200)
        .and_then(|v| {
            v["LoadBalancers"][0]["LoadBalancerArn"]
                .as_str()
                .map(String::from)
        })
        .ok_or_else(|| format!("CreateLoadBalancer: {}", r.text()))
}

/// A load balancer forwarding on port 80 to a target group with one target, and a path rule.
fn elbv2_setup(c: &Client) -> Result<Map<String, Value>> {
    let call = |op: &str, body: Value| -> Result<Value> {
        let r = c.call(op, &body)?;
        r.json()
            .filter(|_| r.status == 200)
            .ok_or_else(|| Error::Other(format!("fixture {op} failed: {}", r.text())))
    };
    let lb = call("CreateLoadBalancer", json!({"Name": "conformance"}))?;
    let lb = lb["LoadBalancers"][0]["LoadBalancerArn"].clone();
    let tg = call(
        "CreateTargetGroup",
        json!({"Name": "conformance", "Protocol": "HTTP", "Port": 80}),
    )?;
    let tg = tg["TargetGroups"][0]["TargetGroupArn"].clone();
    call(
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": [{"Id": "i-0123456789abcdef0"}]}),
    )?;
    let listener = call(
        "CreateListener",
        json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 80,
               "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
    )?;
    let listener = listener["Listeners"][0]["ListenerArn"].clone();
    let rule = call(
        "CreateRule",
        json!({"ListenerArn": listener, "Priority": 1,
               "Conditions": [{"Field": "path-pattern", "Values": ["/conformance/*"]}],
               "Actions": [{"Type": "forward", "TargetGroupArn": tg}]}),
    )?;
    let rule = rule["Rules"][0]["RuleArn"].clone();
    let fixed_response = json!([{"Type": "fixed-response",
                                 "FixedResponseConfig": {"StatusCode": "200"}}]);
    let bindings = json!({
        "LoadBalancerArn": lb,
        "TargetGroupArn": tg,
        "ListenerArn": listener,
        "RuleArn": rule,
        "ResourceArns": [lb, tg, listener, rule],
        // What an Application Load Balancer on loopback takes, so bound creates get past
        // ELBv2's own rules and are echoed: HTTP on a port nothing else uses, instance
        // targets, health checks whose timeout is below their interval, fixed responses, and
        // a rule priority and path the fixture's rule does not hold.
        "Protocol": "HTTP",
        "Port": 41_890,
        "ProtocolVersion": "HTTP1",
        "TargetType": "instance",
        "Type": "application",
        "HealthCheckProtocol": "HTTP",
        "HealthCheckPort": "traffic-port",
        "HealthCheckPath": "/health",
        "HealthCheckIntervalSeconds": 30,
        "HealthCheckTimeoutSeconds": 5,
        "Matcher": {"HttpCode": "200"},
        "DefaultActions": fixed_response,
        "Actions": fixed_response,
        "Priority": 50,
        "Conditions": [{"Field": "path-pattern", "Values": ["/bound/*"]}],
        // Left out: what only HTTPS/TLS listeners or Network Load Balancers take, which an HTTP
        // listener of an Application Load Balancer must refuse.
        "SslPolicy": null,
        "AlpnPolicy": null,
        "MutualAuthentication": null,
        "EnablePrefixForIpv6SourceNat": "off",
        // One transform of one type, with its own type's config.
        "Transforms": [{"Type": "url-rewrite",
                        "UrlRewriteConfig": {"Rewrites": [{"Regex": "^/bound/(.*)$",
                                                           "Replace": "/$1"}]}}],
    });
    match bindings {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Other("bindings are an object".into())),
    }
}
