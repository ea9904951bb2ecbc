//! One realistic multi-container task definition registered by three clients — the aws CLI
//! (`--cli-input-json`), boto3 and the AWS SDK for Rust — and described back field for field.

use crate::harness::{Berth, Opts, assert_subset};
use aws_sdk_ecs::types as t;
use serde_json::{Value, json};

/// A task definition as a real team writes one: a web front, an app, an Envoy proxy and an
/// init container, with every kind of container and task setting ECS users reach for.
fn realistic(family: &str) -> Value {
    json!({
        "family": family,
        "taskRoleArn": "arn:aws:iam::123456789012:role/shop-task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/shop-execution",
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "public.ecr.aws/nginx/nginx:1.27",
                "cpu": 256,
                "memory": 512,
                "memoryReservation": 256,
                "essential": true,
                "portMappings": [
                    {"containerPort": 80, "hostPort": 80, "protocol": "tcp", "name": "http", "appProtocol": "http"}
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                    "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 10
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/shop",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "web"
                    }
                },
                "environment": [
                    {"name": "NGINX_PORT", "value": "80"},
                    {"name": "UPSTREAM", "value": "http://localhost:8080"}
                ],
                "secrets": [
                    {"name": "TLS_KEY", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/shop/tls-key"}
                ],
                "mountPoints": [
                    {"sourceVolume": "static", "containerPath": "/usr/share/nginx/html", "readOnly": true}
                ],
                "volumesFrom": [{"sourceContainer": "app", "readOnly": true}],
                "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
                "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
                "linuxParameters": {
                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["MKNOD"]},
                    "initProcessEnabled": true,
                    "tmpfs": [{"containerPath": "/var/cache/nginx", "size": 64, "mountOptions": ["rw", "noexec"]}]
                },
                "dockerLabels": {"com.example.tier": "frontend", "com.example.team": "shop"},
                "stopTimeout": 30,
                "readonlyRootFilesystem": false
            },
            {
                "name": "app",
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/app:2.4.1",
                "cpu": 512,
                "memory": 1024,
                "essential": true,
                "entryPoint": ["/usr/local/bin/app"],
                "command": ["serve", "--port", "8080"],
                "workingDirectory": "/srv/app",
                "user": "1000:1000",
                "portMappings": [{"containerPort": 8080, "protocol": "tcp", "name": "api"}],
                "healthCheck": {
                    "command": ["CMD", "/usr/local/bin/app", "health"],
                    "interval": 15, "timeout": 3, "retries": 5, "startPeriod": 60
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/shop",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "app"
                    },
                    "secretOptions": [
                        {"name": "api-key", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:log-key"}
                    ]
                },
                "environment": [
                    {"name": "RUST_LOG", "value": "info"},
                    {"name": "DATABASE_POOL", "value": "16"}
                ],
                "secrets": [
                    {"name": "DATABASE_URL", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-db"}
                ],
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/var/lib/app", "readOnly": false}],
                "dependsOn": [
                    {"containerName": "envoy", "condition": "HEALTHY"},
                    {"containerName": "migrate", "condition": "SUCCESS"}
                ],
                "ulimits": [
                    {"name": "nofile", "softLimit": 32768, "hardLimit": 65536},
                    {"name": "core", "softLimit": 0, "hardLimit": 0}
                ],
                "linuxParameters": {"sharedMemorySize": 128, "swappiness": 10, "maxSwap": 512},
                "dockerLabels": {"com.example.tier": "backend"},
                "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
                "startTimeout": 120
            },
            {
                "name": "envoy",
                "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod",
                "cpu": 128,
                "memory": 256,
                "essential": true,
                "user": "1337",
                "portMappings": [{"containerPort": 9901, "protocol": "tcp"}],
                "environment": [
                    {"name": "APPMESH_RESOURCE_ARN", "value": "arn:aws:appmesh:us-east-1:123456789012:mesh/shop/virtualNode/app"}
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE"],
                    "interval": 5, "timeout": 2, "retries": 3, "startPeriod": 10
                },
                "ulimits": [{"name": "nofile", "softLimit": 15000, "hardLimit": 15000}]
            },
            {
                "name": "migrate",
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/app:2.4.1",
                "memory": 128,
                "essential": false,
                "command": ["migrate", "--to", "latest"],
                "secrets": [
                    {"name": "DATABASE_URL", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-db"}
                ]
            }
        ],
        "volumes": [
            {"name": "static", "host": {"sourcePath": "/srv/shop/static"}},
            {
                "name": "data",
                "dockerVolumeConfiguration": {
                    "scope": "shared",
                    "autoprovision": true,
                    "driver": "local",
                    "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
                    "labels": {"com.example.volume": "app-data"}
                }
            }
        ],
        "placementConstraints": [
            {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}
        ],
        "requiresCompatibilities": ["EC2"],
        "cpu": "1024",
        "memory": "2048",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 30},
        "proxyConfiguration": {
            "type": "APPMESH",
            "containerName": "envoy",
            "properties": [
                {"name": "IgnoredUID", "value": "1337"},
                {"name": "AppPorts", "value": "8080"},
                {"name": "ProxyIngressPort", "value": "15000"},
                {"name": "ProxyEgressPort", "value": "15001"},
                {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"}
            ]
        },
        "pidMode": "task",
        "tags": [
            {"key": "team", "value": "shop"},
            {"key": "cost-center", "value": "1234"}
        ]
    })
}

/// The same definition built with the Rust SDK's builders.
fn realistic_sdk(
    client: &aws_sdk_ecs::Client,
    family: &str,
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder
{
    let kv = |n: &str, v: &str| t::KeyValuePair::builder().name(n).value(v).build();
    let secret = |n: &str, v: &str| {
        t::Secret::builder()
            .name(n)
            .value_from(v)
            .build()
            .expect("secret")
    };
    let ulimit = |name: t::UlimitName, soft: i32, hard: i32| {
        t::Ulimit::builder()
            .name(name)
            .soft_limit(soft)
            .hard_limit(hard)
            .build()
            .expect("ulimit")
    };
    let awslogs = |prefix: &str| {
        t::LogConfiguration::builder()
            .log_driver(t::LogDriver::Awslogs)
            .options("awslogs-group", "/ecs/shop")
            .options("awslogs-region", "us-east-1")
            .options("awslogs-stream-prefix", prefix)
    };
    let health = |cmd: &[&str], interval, timeout, retries, start| {
        let mut b = t::HealthCheck::builder()
            .interval(interval)
            .timeout(timeout)
            .retries(retries)
            .start_period(start);
        for c in cmd {
            b = b.command(*c);
        }
        b.build().expect("health check")
    };
    let depends = |name: &str, condition: t::ContainerCondition| {
        t::ContainerDependency::builder()
            .container_name(name)
            .condition(condition)
            .build()
            .expect("dependency")
    };
    let port = |p: i32| t::PortMapping::builder().container_port(p);
    let db_secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-db";
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/app:2.4.1";

    let web = t::ContainerDefinition::builder()
        .name("web")
        .image("public.ecr.aws/nginx/nginx:1.27")
        .cpu(256)
        .memory(512)
        .memory_reservation(256)
        .essential(true)
        .port_mappings(
            port(80)
                .host_port(80)
                .protocol(t::TransportProtocol::Tcp)
                .name("http")
                .app_protocol(t::ApplicationProtocol::Http)
                .build(),
        )
        .health_check(health(
            &["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
            30,
            5,
            3,
            10,
        ))
        .log_configuration(awslogs("web").build().expect("log configuration"))
        .environment(kv("NGINX_PORT", "80"))
        .environment(kv("UPSTREAM", "http://localhost:8080"))
        .secrets(secret(
            "TLS_KEY",
            "arn:aws:ssm:us-east-1:123456789012:parameter/shop/tls-key",
        ))
        .mount_points(
            t::MountPoint::builder()
                .source_volume("static")
                .container_path("/usr/share/nginx/html")
                .read_only(true)
                .build(),
        )
        .volumes_from(
            t::VolumeFrom::builder()
                .source_container("app")
                .read_only(true)
                .build(),
        )
        .depends_on(depends("app", t::ContainerCondition::Healthy))
        .ulimits(ulimit(t::UlimitName::Nofile, 65536, 65536))
        .linux_parameters(
            t::LinuxParameters::builder()
                .capabilities(
                    t::KernelCapabilities::builder()
                        .add("NET_BIND_SERVICE")
                        .drop("MKNOD")
                        .build(),
                )
                .init_process_enabled(true)
                .tmpfs(
                    t::Tmpfs::builder()
                        .container_path("/var/cache/nginx")
                        .size(64)
                        .mount_options("rw")
                        .mount_options("noexec")
                        .build()
                        .expect("tmpfs"),
                )
                .build(),
        )
        .docker_labels("com.example.tier", "frontend")
        .docker_labels("com.example.team", "shop")
        .stop_timeout(30)
        .readonly_root_filesystem(false)
        .build();

    let app = t::ContainerDefinition::builder()
        .name("app")
        .image(image)
        .cpu(512)
        .memory(1024)
        .essential(true)
        .entry_point("/usr/local/bin/app")
        .command("serve")
        .command("--port")
        .command("8080")
        .working_directory("/srv/app")
        .user("1000:1000")
        .port_mappings(
            port(8080)
                .protocol(t::TransportProtocol::Tcp)
                .name("api")
                .build(),
        )
        .health_check(health(
            &["CMD", "/usr/local/bin/app", "health"],
            15,
            3,
            5,
            60,
        ))
        .log_configuration(
            awslogs("app")
                .secret_options(secret(
                    "api-key",
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:log-key",
                ))
                .build()
                .expect("log configuration"),
        )
        .environment(kv("RUST_LOG", "info"))
        .environment(kv("DATABASE_POOL", "16"))
        .secrets(secret("DATABASE_URL", db_secret))
        .mount_points(
            t::MountPoint::builder()
                .source_volume("data")
                .container_path("/var/lib/app")
                .read_only(false)
                .build(),
        )
        .depends_on(depends("envoy", t::ContainerCondition::Healthy))
        .depends_on(depends("migrate", t::ContainerCondition::Success))
        .ulimits(ulimit(t::UlimitName::Nofile, 32768, 65536))
        .ulimits(ulimit(t::UlimitName::Core, 0, 0))
        .linux_parameters(
            t::LinuxParameters::builder()
                .shared_memory_size(128)
                .swappiness(10)
                .max_swap(512)
                .build(),
        )
        .docker_labels("com.example.tier", "backend")
        .system_controls(
            t::SystemControl::builder()
                .namespace("net.core.somaxconn")
                .value("1024")
                .build(),
        )
        .start_timeout(120)
        .build();

    let envoy = t::ContainerDefinition::builder()
        .name("envoy")
        .image("public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.6.0-prod")
        .cpu(128)
        .memory(256)
        .essential(true)
        .user("1337")
        .port_mappings(port(9901).protocol(t::TransportProtocol::Tcp).build())
        .environment(kv(
            "APPMESH_RESOURCE_ARN",
            "arn:aws:appmesh:us-east-1:123456789012:mesh/shop/virtualNode/app",
        ))
        .health_check(health(
            &[
                "CMD-SHELL",
                "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE",
            ],
            5,
            2,
            3,
            10,
        ))
        .ulimits(ulimit(t::UlimitName::Nofile, 15000, 15000))
        .build();

    let migrate = t::ContainerDefinition::builder()
        .name("migrate")
        .image(image)
        .memory(128)
        .essential(false)
        .command("migrate")
        .command("--to")
        .command("latest")
        .secrets(secret("DATABASE_URL", db_secret))
        .build();

    let mut proxy = t::ProxyConfiguration::builder()
        .r#type(t::ProxyConfigurationType::Appmesh)
        .container_name("envoy");
    for (n, v) in [
        ("IgnoredUID", "1337"),
        ("AppPorts", "8080"),
        ("ProxyIngressPort", "15000"),
        ("ProxyEgressPort", "15001"),
        ("EgressIgnoredIPs", "169.254.170.2,169.254.169.254"),
    ] {
        proxy = proxy.properties(kv(n, v));
    }

    client
        .register_task_definition()
        .family(family)
        .task_role_arn("arn:aws:iam::123456789012:role/shop-task")
        .execution_role_arn("arn:aws:iam::123456789012:role/shop-execution")
        .network_mode(t::NetworkMode::Awsvpc)
        .container_definitions(web)
        .container_definitions(app)
        .container_definitions(envoy)
        .container_definitions(migrate)
        .volumes(
            t::Volume::builder()
                .name("static")
                .host(
                    t::HostVolumeProperties::builder()
                        .source_path("/srv/shop/static")
                        .build(),
                )
                .build(),
        )
        .volumes(
            t::Volume::builder()
                .name("data")
                .docker_volume_configuration(
                    t::DockerVolumeConfiguration::builder()
                        .scope(t::Scope::Shared)
                        .autoprovision(true)
                        .driver("local")
                        .driver_opts("type", "tmpfs")
                        .driver_opts("device", "tmpfs")
                        .labels("com.example.volume", "app-data")
                        .build(),
                )
                .build(),
        )
        .placement_constraints(
            t::TaskDefinitionPlacementConstraint::builder()
                .r#type(t::TaskDefinitionPlacementConstraintType::MemberOf)
                .expression("attribute:ecs.instance-type =~ t3.*")
                .build(),
        )
        .requires_compatibilities(t::Compatibility::Ec2)
        .cpu("1024")
        .memory("2048")
        .runtime_platform(
            t::RuntimePlatform::builder()
                .cpu_architecture(t::CpuArchitecture::X8664)
                .operating_system_family(t::OsFamily::Linux)
                .build(),
        )
        .ephemeral_storage(t::EphemeralStorage::builder().size_in_gib(30).build())
        .proxy_configuration(proxy.build().expect("proxy configuration"))
        .pid_mode(t::PidMode::Task)
        .tags(t::Tag::builder().key("team").value("shop").build())
        .tags(t::Tag::builder().key("cost-center").value("1234").build())
}

/// The request without `tags`, which DescribeTaskDefinition returns beside the definition.
fn split_tags(request: &Value) -> (Value, Value) {
    let mut definition = request.clone();
    let tags = definition
        .as_object_mut()
        .and_then(|o| o.remove("tags"))
        .unwrap_or(Value::Null);
    (definition, tags)
}

const BOTO3_REGISTER: &str = r#"
import boto3, json, os
ecs = boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"], region_name="us-east-1")
out = ecs.register_task_definition(**json.loads(os.environ["TASK_DEFINITION"]))
out.pop("ResponseMetadata", None)
print(json.dumps(out, default=str))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn three_clients_register_the_same_definition_and_get_it_back_field_for_field() {
    let berth = Berth::start(Opts::default());
    let family = "shop-web";
    let request = realistic(family);
    let (definition, tags) = split_tags(&request);
    let account = berth.keys.account_id.clone();
    let arn = |rev: u32| format!("arn:aws:ecs:us-east-1:{account}:task-definition/{family}:{rev}");

    // 1. The aws CLI, from a file, as people keep them in their repositories.
    let file = berth.dir.path().join("task-definition.json");
    std::fs::write(&file, request.to_string()).expect("write the input file");
    let input = format!("file://{}", file.display());
    let cli = berth
        .aws_profile(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &input,
        ])
        .json();
    assert_subset("aws CLI register", &definition, &cli["taskDefinition"]);
    assert_subset("aws CLI register tags", &tags, &cli["tags"]);
    assert_eq!(cli["taskDefinition"]["revision"], 1);
    assert_eq!(cli["taskDefinition"]["taskDefinitionArn"], arn(1));

    // 2. boto3.
    let out = berth.python(BOTO3_REGISTER, &[("TASK_DEFINITION", &request.to_string())]);
    let boto = out.json();
    assert_subset("boto3 register", &definition, &boto["taskDefinition"]);
    assert_eq!(boto["taskDefinition"]["revision"], 2);
    assert_eq!(boto["taskDefinition"]["taskDefinitionArn"], arn(2));

    // 3. The Rust SDK.
    let client = berth.sdk();
    let sdk = realistic_sdk(&client, family)
        .send()
        .await
        .expect("SDK register");
    let td = sdk.task_definition().expect("a task definition");
    assert_eq!(td.revision(), 3);
    assert_eq!(td.task_definition_arn(), Some(arn(3).as_str()));
    assert_eq!(td.container_definitions().len(), 4);
    assert_eq!(sdk.tags().len(), 2);

    // Every revision describes as what was sent, whichever client sent it.
    for rev in 1..=3 {
        let described = berth.ecs_ok(
            "DescribeTaskDefinition",
            &json!({"taskDefinition": format!("{family}:{rev}"), "include": ["TAGS"]}),
        );
        let got = &described["taskDefinition"];
        assert_subset(&format!("describe {family}:{rev}"), &definition, got);
        assert_subset(
            &format!("tags of {family}:{rev}"),
            &tags,
            &described["tags"],
        );
        assert_eq!(got["revision"], rev);
        assert_eq!(got["taskDefinitionArn"], arn(rev));
        assert_eq!(got["status"], "ACTIVE");
        assert!(got["registeredAt"].is_number(), "{got}");
    }

    // And the SDK parses berth's answer into the same values it sent.
    let described = client
        .describe_task_definition()
        .task_definition(family)
        .include(t::TaskDefinitionField::Tags)
        .send()
        .await
        .expect("SDK describe");
    let td = described.task_definition().expect("a task definition");
    assert_eq!(
        td.revision(),
        3,
        "the family alone names its latest revision"
    );
    let web = &td.container_definitions()[0];
    assert_eq!(web.name(), Some("web"));
    assert_eq!(
        web.depends_on()[0].condition(),
        &t::ContainerCondition::Healthy
    );
    assert_eq!(
        web.linux_parameters()
            .and_then(|l| l.capabilities())
            .map(|c| c.add()),
        Some(&["NET_BIND_SERVICE".to_string()][..])
    );
    assert_eq!(
        td.proxy_configuration().map(|p| p.container_name()),
        Some("envoy")
    );
    assert_eq!(td.volumes().len(), 2);
    assert_eq!(
        td.runtime_platform().and_then(|p| p.cpu_architecture()),
        Some(&t::CpuArchitecture::X8664)
    );
    assert_eq!(td.ephemeral_storage().map(|e| e.size_in_gib()), Some(30));
    assert_eq!(described.tags().len(), 2);

    let listed = berth.ecs_ok("ListTaskDefinitions", &json!({"familyPrefix": family}));
    assert_eq!(
        listed["taskDefinitionArns"],
        json!([arn(1), arn(2), arn(3)])
    );
}
