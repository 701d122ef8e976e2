//! Which Kubernetes pod and container a process runs in, without the API server: the pod UID
//! and container ID from the process's cgroup path, then the names from what the kubelet keeps
//! on the node.
//!
//! cgroup paths (`/proc/PID/cgroup`), as the kubelet's cgroup drivers and the runtimes name them:
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with
//!   _ for ->.slice/cri-containerd-<id>.scope` (or `crio-<id>.scope`, `docker-<id>.scope`);
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (`/kubepods/pod<uid>/<id>` for
//!   Guaranteed pods).
//!
//! Names, in this order: `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` (the
//! kubelet's symlink per container); `/var/log/pods/<namespace>_<pod>_<uid>/<container>/`; the
//! kubelet's pod directory `/var/lib/kubelet/pods/<uid>/`, whose service-account volume holds the
//! namespace (`volumes/kubernetes.io~projected/*/namespace`), whose `etc-hosts` ends with the
//! pod's hostname (its name unless the spec sets another), and whose `containers/` lists the
//! container names.

use std::path::{Path, PathBuf};

/// What the cgroup path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupIds {
    /// The pod's UID, with dashes.
    pub pod_uid: String,
    /// The container's runtime ID (64 hex digits), when the path names one.
    pub container_id: Option<String>,
}

/// A process's pod and container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLabels {
    pub pod_uid: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
}

impl PodLabels {
    /// As metric labels (those known).
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut v = vec![("pod_uid".to_string(), self.pod_uid.clone())];
        for (k, val) in [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("container", &self.container),
        ] {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v
    }
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pod UID and container ID in the text of `/proc/PID/cgroup` (v1 or v2), if the process
/// runs in a Kubernetes pod.
pub fn parse_cgroup(text: &str) -> Option<CgroupIds> {
    for line in text.lines() {
        // hierarchy-ID:controllers:path
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if !path.contains("kubepods") {
            continue;
        }
        let mut pod_uid = None;
        let mut container_id = None;
        for part in path.split('/') {
            let part = part
                .strip_suffix(".slice")
                .or_else(|| part.strip_suffix(".scope"))
                .unwrap_or(part);
            // `kubepods-burstable-pod<uid>` (systemd, `_` for `-`) or `pod<uid>` (cgroupfs).
            if let Some(i) = part.rfind("pod")
                && (i == 0 || part[..i].ends_with('-'))
            {
                let uid = part[i + 3..].replace('_', "-");
                if uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                    pod_uid = Some(uid);
                    continue;
                }
            }
            // `cri-containerd-<id>`, `crio-<id>`, `docker-<id>`, or a bare `<id>`.
            let id = part.rsplit('-').next().unwrap_or(part);
            if is_hex_id(id) {
                container_id = Some(id.to_string());
            }
        }
        if let Some(pod_uid) = pod_uid {
            return Some(CgroupIds {
                pod_uid,
                container_id,
            });
        }
    }
    None
}

/// Where the kubelet's files are (`/` on a node; a temporary tree in tests).
#[derive(Debug, Clone)]
pub struct NodeRoot(pub PathBuf);

impl Default for NodeRoot {
    fn default() -> Self {
        NodeRoot(PathBuf::from("/"))
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl NodeRoot {
    fn at(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// The pod and container of a process whose cgroup file reads `cgroup`; None outside a
    /// pod.
    pub fn pod_of(&self, cgroup: &str) -> Option<PodLabels> {
        let ids = parse_cgroup(cgroup)?;
        let mut out = PodLabels {
            pod_uid: ids.pod_uid.clone(),
            ..Default::default()
        };
        // /var/log/containers/<pod>_<namespace>_<container>-<id>.log
        if let Some(id) = &ids.container_id {
            let suffix = format!("-{id}.log");
            for name in read_dir_names(&self.at("/var/log/containers")) {
                if let Some(stem) = name.strip_suffix(&suffix) {
                    let mut parts = stem.splitn(3, '_');
                    if let (Some(pod), Some(ns), Some(c)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        out.pod = Some(pod.to_string());
                        out.namespace = Some(ns.to_string());
                        out.container = Some(c.to_string());
                        return Some(out);
                    }
                }
            }
        }
        // /var/log/pods/<namespace>_<pod>_<uid>/<container>/
        let uid_suffix = format!("_{}", ids.pod_uid);
        for name in read_dir_names(&self.at("/var/log/pods")) {
            if let Some(stem) = name.strip_suffix(&uid_suffix)
                && let Some((ns, pod)) = stem.split_once('_')
            {
                out.namespace = Some(ns.to_string());
                out.pod = Some(pod.to_string());
                let containers = read_dir_names(&self.at("/var/log/pods").join(&name));
                if let [only] = containers.as_slice() {
                    out.container = Some(only.clone());
                }
                break;
            }
        }
        // The kubelet's pod directory.
        let dir = self.at("/var/lib/kubelet/pods").join(&ids.pod_uid);
        if out.namespace.is_none() {
            let projected = dir.join("volumes/kubernetes.io~projected");
            out.namespace = read_dir_names(&projected).iter().find_map(|v| {
                let ns = std::fs::read_to_string(projected.join(v).join("namespace")).ok()?;
                Some(ns.trim().to_string()).filter(|n| !n.is_empty())
            });
        }
        if out.pod.is_none() {
            out.pod = std::fs::read_to_string(dir.join("etc-hosts"))
                .ok()
                .and_then(|h| hosts_name(&h));
        }
        if out.container.is_none()
            && let [only] = read_dir_names(&dir.join("containers")).as_slice()
        {
            out.container = Some(only.clone());
        }
        Some(out)
    }
}

/// The pod's hostname in the kubelet-managed hosts file: the name on its last entry (the pod IP's
/// line, written after the fixed localhost lines; src: kubelet, `managedHostsFileContent`).
fn hosts_name(hosts: &str) -> Option<String> {
    let local = |ip: &str| {
        ip.starts_with("127.")
            || ip == "::1"
            || ip.starts_with("fe00")
            || ip.starts_with("fe02")
            || ip.starts_with("ff0")
    };
    hosts.lines().rev().map(str::trim).find_map(|l| {
        let mut words = l.split_whitespace();
        let ip = words.next()?;
        if l.starts_with('#') || local(ip) {
            return None;
        }
        words.next().map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b8f1a3c5d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";
    const UID: &str = "5d3c1b2a-9e8f-4a7b-8c6d-0e1f2a3b4c5d";

    #[test]
    fn cgroup_v2_systemd_containerd() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(
            parse_cgroup(&text),
            Some(CgroupIds {
                pod_uid: UID.into(),
                container_id: Some(ID.into())
            })
        );
    }

    #[test]
    fn cgroup_v1_cgroupfs_and_crio() {
        let v1 = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n"
        );
        let got = parse_cgroup(&v1).unwrap();
        assert_eq!(
            (got.pod_uid.as_str(), got.container_id.as_deref()),
            (UID, Some(ID))
        );
        // A Guaranteed pod (no QoS level), CRI-O scope.
        let crio = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(
            parse_cgroup(&crio).unwrap().container_id.as_deref(),
            Some(ID)
        );
        // The pod's own cgroup (a pause process): no container.
        let pause = format!("0::/kubepods/pod{UID}");
        assert_eq!(parse_cgroup(&pause).unwrap().container_id, None);
    }

    #[test]
    fn outside_kubernetes() {
        for t in [
            "0::/user.slice/user-1000.slice/session-2.scope",
            "0::/system.slice/docker-0123.scope",
            "0::/",
            "",
            "garbage",
            "0::/kubepods.slice/kubepods-podnotauid.slice",
        ] {
            assert_eq!(parse_cgroup(t), None, "{t}");
        }
    }

    fn tree(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bp-k8s-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_from_the_container_log_link() {
        let root = tree("links");
        let logs = root.join("var/log/containers");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join(format!("web-7d9f_shop_server-{ID}.log")), "").unwrap();
        std::fs::write(logs.join("other_ns_c-0000.log"), "").unwrap();
        let cg = format!("0::/kubepods/burstable/pod{UID}/{ID}");
        let got = NodeRoot(root.clone()).pod_of(&cg).unwrap();
        assert_eq!(
            got,
            PodLabels {
                pod_uid: UID.into(),
                namespace: Some("shop".into()),
                pod: Some("web-7d9f".into()),
                container: Some("server".into()),
            }
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn names_from_the_kubelet_pod_dir() {
        let root = tree("poddir");
        let pod = root.join("var/lib/kubelet/pods").join(UID);
        let sa = pod.join("volumes/kubernetes.io~projected/kube-api-access-x2x9z");
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::write(sa.join("namespace"), "payments\n").unwrap();
        std::fs::create_dir_all(pod.join("containers/api")).unwrap();
        std::fs::write(
            pod.join("etc-hosts"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost \
             ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.1.7\tapi-5c8b\n",
        )
        .unwrap();
        let cg = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let got = NodeRoot(root.clone()).pod_of(&cg).unwrap();
        assert_eq!(got.namespace.as_deref(), Some("payments"));
        assert_eq!(got.pod.as_deref(), Some("api-5c8b"));
        assert_eq!(got.container.as_deref(), Some("api"));
        let labels = got.labels();
        assert_eq!(labels[0], ("pod_uid".to_string(), UID.to_string()));
        assert_eq!(labels.len(), 4);
        // Nothing on the node about the pod: its UID alone.
        let bare = NodeRoot(root.join("nothing")).pod_of(&cg).unwrap();
        assert_eq!(bare.labels().len(), 1);
        let _ = std::fs::remove_dir_all(root);
    }
}
