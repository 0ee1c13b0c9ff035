//! The manifests of `deploy/kubernetes/` stay valid and true to hairpin: every resource
//! passes `kubernetes-validate --strict` against the schemas of the oldest Kubernetes they
//! are written for and of the newest the validator knows; the NetworkAttachmentDefinitions,
//! a CRD it has no schema for, hold hairpin-cni network configs whose VLANs their pool's
//! uplink carries; the DaemonSets grant exactly the capabilities the preflight check asks
//! for and run hairpin as the README says; each pool's `hairpin.toml` parses, and its UMEMs
//! fit the memory limit. No root needed; `kubernetes-validate` and python3 with PyYAML
//! (which it brings) are, from PyPI: `cargo xtask setup` installs them. Without them these
//! tests fail, never skip.
use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use hairpin::{
    control::{
        config::BridgeConfig, config_file, preflight::CAPABILITIES, service::DEFAULT_SOCKET,
    },
    datapath::{
        KERNEL_BYTES_PER_FRAME,
        budget::Budget,
        group::{self, Placement, Room},
        handoff,
    },
    switch::{Mode, Role, vlan::PortVlans},
};

/// Pods a node of each pool is sized for, beside the uplink.
const PODS_PER_NODE: usize = 250;
use serde_json::{Value, json};

/// The oldest Kubernetes the manifests are written for; the validator's newest is checked too.
const OLDEST_KUBERNETES: &str = "1.28.0";

/// How the tests get the tools they need, named in every failure to run one.
const SETUP: &str = "`python3 -m pip install kubernetes-validate` (it brings PyYAML), \
                     or `cargo xtask setup`";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every manifest, by file name, in order.
fn yaml_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("reading deploy/kubernetes")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

/// The manifests that hold resources: all but the kustomization.
fn resource_files() -> Vec<String> {
    yaml_files()
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect()
}

/// Runs `program ARGS`, failing loudly when it cannot be started.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): these tests need {SETUP}"))
}

/// The documents of a YAML file, read by PyYAML and handed over as JSON.
fn documents(file: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
        json.dump(docs, sys.stdout)";
    let out = run("python3", &["-c", TO_JSON, file]);
    assert!(
        out.status.success(),
        "reading {file} with python3's yaml failed (these tests need {SETUP}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every resource of every manifest, with the file it is in (read once).
fn resources() -> &'static [(String, Value)] {
    static RESOURCES: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    RESOURCES.get_or_init(|| {
        resource_files()
            .into_iter()
            .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
            .collect()
    })
}

fn find(kind: &str, name: &str) -> Value {
    resources()
        .iter()
        .map(|(_, r)| r)
        .find(|r| r["kind"] == kind && r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
        .clone()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// A memory quantity in bytes ("256Mi", "1Gi").
fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap());
    let unit = match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => panic!("memory quantity {quantity}: only Mi and Gi are read here"),
    };
    number.parse::<u64>().unwrap() * unit
}

/// The pools: each DaemonSet, the ConfigMap it mounts, the mode its config must have and
/// the file of the NetworkAttachmentDefinitions meant for its nodes.
const POOLS: [(&str, &str, Mode, &str); 2] = [
    ("hairpin", "hairpin", Mode::Veb, "nad-veb.yaml"),
    ("hairpin-vepa", "hairpin-vepa", Mode::Vepa, "nad-vepa.yaml"),
];

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

/// The host path of the volume mounted at `mount` in `container` of `pod`.
fn host_path_at(pod: &Value, container: &Value, mount: &str) -> String {
    let volume = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == mount)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {mount}", container["name"]));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume["name"])
        .unwrap();
    str_of(&volume["hostPath"]["path"], "hostPath.path").to_owned()
}

/// The config a pool's ConfigMap holds, parsed as `hairpin run --config` would.
fn pool_config(config_map: &str) -> BridgeConfig {
    let map = find("ConfigMap", config_map);
    let text = str_of(&map["data"]["hairpin.toml"], "hairpin.toml");
    let path = PathBuf::from(format!("ConfigMap {config_map}: hairpin.toml"));
    config_file::parse(text, &path).unwrap_or_else(|e| panic!("{e}"))
}

/// The VLANs the pool's uplink carries tagged.
fn trunk(config: &BridgeConfig) -> Vec<u16> {
    let uplinks: Vec<_> = config
        .ports
        .iter()
        .filter(|p| p.policy.role == Role::Uplink)
        .collect();
    match &uplinks[..] {
        [uplink] => match &uplink.policy.vlans {
            Some(PortVlans::Trunk { tagged, .. }) => tagged.clone(),
            other => panic!("the uplink {} is no trunk: {other:?}", uplink.name),
        },
        _ => panic!("{} uplinks, not one", uplinks.len()),
    }
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let files = resource_files();
    let expected: Vec<(&str, String)> = resources()
        .iter()
        .filter(|(_, r)| r["kind"] != "NetworkAttachmentDefinition")
        .map(|(f, r)| {
            let kind = str_of(&r["kind"], "kind").to_lowercase();
            (
                f.as_str(),
                format!("{kind}/{}", str_of(&r["metadata"]["name"], "name")),
            )
        })
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    for versions in [&["-k", OLDEST_KUBERNETES][..], &[][..]] {
        let mut args = vec!["--strict"];
        args.extend(versions);
        args.extend(files.iter().map(String::as_str));
        let out = run("kubernetes-validate", &args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate {args:?} failed:\n{text}"
        );
        // A resource it has no schema for is only a warning: each must be checked here.
        for (file, resource) in &expected {
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("{file} passed for resource {resource} "))),
                "kubernetes-validate {versions:?} did not check {resource} of {file}:\n{text}"
            );
        }
        for line in text.lines().filter(|l| !l.starts_with("INFO ")) {
            assert!(
                line.contains("Couldn't find schema for kind NetworkAttachmentDefinition"),
                "kubernetes-validate {versions:?}: {line}"
            );
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let [kustomization] = &documents("kustomization.yaml")[..] else {
        panic!("kustomization.yaml: one document expected");
    };
    assert_eq!(kustomization["kind"], "Kustomization");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "resource"))
        .collect();
    let files = resource_files();
    assert_eq!(listed, files.iter().map(String::as_str).collect());
}

#[test]
fn the_daemonsets_grant_exactly_the_preflight_capabilities() {
    let mut wanted: Vec<&str> = CAPABILITIES
        .iter()
        .map(|(_, name, _)| name.strip_prefix("CAP_").unwrap())
        .collect();
    wanted.sort();
    for (daemonset, ..) in POOLS {
        let ds = find("DaemonSet", daemonset);
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true, "{daemonset}");
        assert_eq!(pod["hostPID"], false, "{daemonset}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{daemonset}"
        );

        let hairpin = container(pod, "containers", "hairpin");
        let security = &hairpin["securityContext"];
        let mut added: Vec<&str> = security["capabilities"]["add"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| str_of(c, "capability"))
            .collect();
        added.sort();
        assert_eq!(added, wanted, "{daemonset}: capabilities.add");
        assert_eq!(
            security["capabilities"]["drop"],
            json!(["ALL"]),
            "{daemonset}"
        );
        // Root: Kubernetes gives added capabilities to a root process only.
        assert_eq!(security["runAsUser"], 0, "{daemonset}");
        assert_eq!(security["privileged"], false, "{daemonset}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{daemonset}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{daemonset}");

        // The init container copies files and needs no capability at all.
        let install = container(pod, "initContainers", "install-cni");
        let security = &install["securityContext"];
        assert_eq!(
            security["capabilities"],
            json!({"drop": ["ALL"]}),
            "{daemonset}"
        );
        assert_eq!(security["allowPrivilegeEscalation"], false, "{daemonset}");
    }
}

#[test]
fn the_daemonsets_run_hairpin_as_the_readme_says() {
    let socket_dir = Path::new(DEFAULT_SOCKET)
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    for (daemonset, config_map, ..) in POOLS {
        let ds = find("DaemonSet", daemonset);
        let pod = &ds["spec"]["template"]["spec"];
        let hairpin = container(pod, "containers", "hairpin");
        assert_eq!(
            hairpin["command"],
            json!([
                "hairpin",
                "run",
                "--config",
                "/etc/hairpin/hairpin.toml",
                "--metrics",
                "$(HOST_IP):9417",
                // The pods' ports outlive a hairpin pod, beside the socket.
                "--state-dir",
                socket_dir
            ]),
            "{daemonset}"
        );
        // The metrics listen on the node's address, which the downward API gives.
        let env = hairpin["env"].as_array().unwrap();
        let host_ip = env.iter().find(|e| e["name"] == "HOST_IP").unwrap();
        assert_eq!(
            host_ip["valueFrom"]["fieldRef"]["fieldPath"],
            "status.hostIP"
        );
        assert_eq!(
            hairpin["ports"],
            json!([{"name": "metrics", "containerPort": 9417, "protocol": "TCP"}])
        );
        assert_eq!(
            ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
            "9417"
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(
                hairpin[probe]["exec"]["command"],
                json!(["hairpin", "show", "ports"]),
                "{daemonset}: {probe}"
            );
        }

        // The control socket's directory is the node's, where hairpin-cni finds it.
        assert_eq!(host_path_at(pod, hairpin, socket_dir), socket_dir);
        // The config comes from the pool's ConfigMap.
        let config = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "config")
            .unwrap();
        assert_eq!(config["configMap"]["name"], config_map, "{daemonset}");
        assert!(
            hairpin["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "config" && m["mountPath"] == "/etc/hairpin")
        );

        // The init container installs the plugin where Multus runs it, and its network
        // config where Multus reads it by name, never where the runtime looks for the
        // cluster's own network.
        let install = container(pod, "initContainers", "install-cni");
        assert_eq!(
            host_path_at(pod, install, "/host/opt/cni/bin"),
            "/opt/cni/bin"
        );
        assert_eq!(
            host_path_at(pod, install, "/host/etc/cni/multus/net.d"),
            "/etc/cni/multus/net.d"
        );
        let script = str_of(&install["command"][2], "the install script");
        assert!(
            script
                .contains("mv -f /host/opt/cni/bin/.hairpin-cni.tmp /host/opt/cni/bin/hairpin-cni"),
            "{script}"
        );
        for volume in pod["volumes"].as_array().unwrap() {
            let path = volume["hostPath"]["path"].as_str().unwrap_or_default();
            assert!(
                !path.starts_with("/etc/cni/net.d"),
                "{daemonset} mounts {path}"
            );
        }
    }
}

#[test]
fn the_vepa_daemonset_is_the_veb_one_but_for_its_pool() {
    let mut veb = find("DaemonSet", "hairpin");
    let vepa = find("DaemonSet", "hairpin-vepa");
    veb["metadata"]["name"] = json!("hairpin-vepa");
    for labels in [
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ] {
        veb.pointer_mut(labels).unwrap()["app.kubernetes.io/instance"] = json!("hairpin-vepa");
    }
    let pod = &mut veb["spec"]["template"]["spec"];
    pod["nodeSelector"]["hairpin/mode"] = json!("vepa");
    for volume in pod["volumes"].as_array_mut().unwrap() {
        if volume["name"] == "config" {
            volume["configMap"]["name"] = json!("hairpin-vepa");
        }
    }
    assert_eq!(
        veb, vepa,
        "vepa-pool.yaml's DaemonSet differs from daemonset.yaml's in more than its pool"
    );
}

#[test]
fn each_pools_config_parses_and_its_umems_fit_the_memory_limit() {
    for (daemonset, config_map, mode, _) in POOLS {
        let config = pool_config(config_map);
        assert_eq!(config.mode, mode, "{config_map}");
        // Only the uplink: pods' ports are added at run time by hairpin-cni.
        assert_eq!(config.ports.len(), 1, "{config_map}");
        assert!(!trunk(&config).is_empty());

        let ds = find("DaemonSet", daemonset);
        let hairpin = container(&ds["spec"]["template"]["spec"], "containers", "hairpin");
        let resources = &hairpin["resources"];
        let limit = bytes(str_of(&resources["limits"]["memory"], "memory limit"));
        assert_eq!(
            resources["requests"]["memory"], resources["limits"]["memory"],
            "{daemonset}"
        );
        assert!(
            resources["limits"]["cpu"].is_null(),
            "{daemonset}: a CPU limit"
        );
        // Worker 0 serves the uplink and every pod (a veth has one queue): its first
        // UMEM, sized for the ports at start, and UMEMs of `more_frames` for the ports
        // past what it holds, as hairpin places them, the uplink and the first pod busy
        // (their quotas grown to their rings). Worker 1 serves the uplink's queue 1.
        let workers = config.queues.expect("[datapath] queues") as usize;
        let ring = config.datapath.ring_size as usize;
        let first = config.datapath.umem_frames_for(config.ports.len()) as usize;
        let more = group::more_frames(ring);
        let budget = Budget::new(
            first,
            Budget::reserve(first, ring, handoff::CREDITS),
            config.datapath.growth_frames(config.ports.len()),
        );
        // (frames, budget, ports) of each of worker 0's UMEMs.
        let mut umems = vec![(first, budget, 0)];
        for port in 0..=PODS_PER_NODE {
            let rooms: Vec<Option<Room>> = umems
                .iter()
                .map(|(_, b, ports)| {
                    Some(Room {
                        ports: *ports,
                        frames: Budget::room(b.total(), b.promised()),
                    })
                })
                .collect();
            let g = match group::place(&rooms) {
                Placement::Join(g) => g,
                Placement::Make(g) => {
                    umems.push((more, group::more_budget(ring), 0));
                    g
                }
                Placement::Full => panic!("{config_map}: port {port} has no UMEM"),
            };
            let (_, budget, ports) = &mut umems[g];
            let mut quota = budget.admit(ring);
            *ports += 1;
            if port < 2 {
                for _ in 0..8 {
                    budget.grow(&mut quota, ring);
                }
            }
            assert!(
                budget.promised() <= budget.total(),
                "{config_map}: port {port}"
            );
        }
        let frames = (workers - 1) * first + umems.iter().map(|u| u.0).sum::<usize>();
        let umem_bytes = (frames * config.datapath.frame_size as usize) as u64;
        assert!(
            umem_bytes + (64 << 20) <= limit,
            "{daemonset}: {umem_bytes} bytes of UMEM and 64 MiB besides exceed the limit {limit}"
        );
        // Their sockets' share of the kernel's memory, outside the limit (the docs say):
        // each socket's pool has a descriptor for every frame of its UMEM.
        let sockets: usize = (workers - 1) * first + umems.iter().map(|u| u.0 * u.2).sum::<usize>();
        let kernel = sockets as u64 * KERNEL_BYTES_PER_FRAME;
        assert!(
            kernel < 256 << 20,
            "{config_map}: {kernel} bytes of kernel memory"
        );
        eprintln!(
            "{config_map}: {} UMEMs on worker 0, {} MiB of UMEM, {} MiB of kernel memory",
            umems.len(),
            umem_bytes >> 20,
            kernel >> 20
        );
    }
}

/// Checks a hairpin-cni network config (CNI spec 1.0.0) and returns its VLAN.
fn check_cni_config(what: &str, text: &str, name: &str) -> u16 {
    let config: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert_eq!(config["cniVersion"], "1.0.0", "{what}");
    assert_eq!(config["type"], "hairpin-cni", "{what}");
    assert_eq!(config["name"], name, "{what}");
    assert_eq!(config["ipam"]["type"], "host-local", "{what}");
    assert!(
        config["ipam"]["ranges"][0][0]["subnet"].is_string(),
        "{what}"
    );
    assert!(
        config["socket"].is_null() || config["socket"] == DEFAULT_SOCKET,
        "{what}"
    );
    let vlan = config["vlan"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: no access VLAN"));
    assert!((1..=4094).contains(&vlan), "{what}: VLAN {vlan}");
    check_plugin_accepts(what, &config);
    u16::try_from(vlan).unwrap()
}

/// Runs the plugin itself on `config` (CHECK, as a runtime would): it must get past
/// its own checks of the configuration (unknown keys are code 2, bad values code 7)
/// to asking hairpin, which answers nowhere here (code 11, "try again later").
fn check_plugin_accepts(what: &str, config: &Value) {
    let plugin = Path::new(env!("CARGO_BIN_EXE_hairpin")).with_file_name("hairpin-cni");
    assert!(
        plugin.exists(),
        "{} is missing: `cargo xtask build` builds it",
        plugin.display()
    );
    let mut config = config.clone();
    config["socket"] = json!(format!("/nonexistent/hairpin-{}.sock", std::process::id()));
    let mut child = Command::new(&plugin)
        .env("CNI_COMMAND", "CHECK")
        .env("CNI_CONTAINERID", "kubernetes-test")
        .env("CNI_NETNS", "/nonexistent/netns")
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: hairpin-cni answered no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        answer["code"], 11,
        "{what}: hairpin-cni refused the configuration: {answer}"
    );
}

#[test]
fn the_network_attachments_are_hairpin_cni_configs_their_pool_carries() {
    let mut subnets = BTreeSet::new();
    for (_, config_map, _, nad_file) in POOLS {
        let trunk = trunk(&pool_config(config_map));
        let nads = documents(nad_file);
        assert!(!nads.is_empty(), "{nad_file}");
        for nad in &nads {
            assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1", "{nad_file}");
            assert_eq!(nad["kind"], "NetworkAttachmentDefinition", "{nad_file}");
            let name = str_of(&nad["metadata"]["name"], "name");
            let what = format!("{nad_file}: {name}");
            let text = str_of(&nad["spec"]["config"], "spec.config");
            let vlan = check_cni_config(&what, text, name);
            assert!(
                trunk.contains(&vlan),
                "{what}: VLAN {vlan} is not on the trunk {trunk:?} of ConfigMap {config_map}"
            );
            let config: Value = serde_json::from_str(text).unwrap();
            let subnet = config["ipam"]["ranges"][0][0]["subnet"].clone();
            assert!(subnets.insert(subnet.to_string()), "{what}: {subnet} twice");
        }
    }

    // The veb pool's node-local network: a VLAN on no trunk, so it never leaves the node.
    let node_local = &find("ConfigMap", "hairpin")["data"]["hairpin-cni.conf"];
    let vlan = check_cni_config(
        "ConfigMap hairpin: hairpin-cni.conf",
        str_of(node_local, "hairpin-cni.conf"),
        "hairpin",
    );
    assert!(!trunk(&pool_config("hairpin")).contains(&vlan));
    // None in vepa: a VLAN the uplink does not carry has nowhere to go there.
    assert!(find("ConfigMap", "hairpin-vepa")["data"]["hairpin-cni.conf"].is_null());
}
