//! One finding's wait-for graph: goroutines → the objects they wait on → the goroutines that
//! hold or would serve them (the finding's chain, from detect::graph), with the root cause
//! marked; laid out by layout-rs and drawn as SVG by [`super::svg::SvgCanvas`].

use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{esc, human_ns};
use crate::reportview::{FindingView, ReportView, is_null_addr};

/// Most goroutines drawn in one graph (a leak of 10k goroutines is one finding; its graph shows
/// a few and says how many more).
pub const MAX_GOROUTINES: usize = 6;
/// Most objects drawn per goroutine (a select may wait on many channels).
const MAX_OBJECTS_PER_G: usize = 4;
const FONT: usize = 13;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Goroutine(u64),
    /// An object by address and kind (`chan`, `mutex`, ...).
    Object {
        addr: String,
        kind: String,
    },
    /// An object whose address nobody knows (an execution trace records none): one per waiter.
    Unknown {
        goid: u64,
        kind: String,
    },
    /// The goroutines left out.
    More(usize),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub label: String,
    /// The root cause: a cycle's members, a cascade's root, the object of a lone wait.
    pub root: bool,
    pub cycle: bool,
}

impl Node {
    /// The node's id inside its graph (`g19`, `o0xc000…`, `u19`, `more`).
    pub fn key(&self) -> String {
        match &self.kind {
            NodeKind::Goroutine(g) => format!("g{g}"),
            NodeKind::Object { addr, .. } => format!("o{addr}"),
            NodeKind::Unknown { goid, .. } => format!("u{goid}"),
            NodeKind::More(_) => "more".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel {
    /// A goroutine waits on an object.
    Waits,
    /// A lock's holder.
    HeldBy,
    /// A channel's possible peer.
    ServedBy,
}

impl Rel {
    fn word(self) -> &'static str {
        match self {
            Rel::Waits => "waits",
            Rel::HeldBy => "held by",
            Rel::ServedBy => "served by",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub rel: Rel,
    pub cycle: bool,
    /// How the edge is known: "observed" or "inferred" (the chain's `next_by`).
    pub by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn is_lock(kind: &str) -> bool {
    matches!(kind, "mutex" | "rwmutex" | "waitgroup" | "cond" | "sema")
}

impl Graph {
    fn node(&mut self, kind: NodeKind, label: String) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.kind == kind) {
            return i;
        }
        self.nodes.push(Node {
            kind,
            label,
            root: false,
            cycle: false,
        });
        self.nodes.len() - 1
    }

    fn edge(&mut self, from: usize, to: usize, rel: Rel, by: Option<String>) -> usize {
        if let Some(i) = self.edges.iter().position(|e| e.from == from && e.to == to) {
            return i;
        }
        self.edges.push(Edge {
            from,
            to,
            rel,
            cycle: false,
            by,
        });
        self.edges.len() - 1
    }

    fn goroutine(&mut self, r: &ReportView, goid: u64) -> usize {
        let label = match (r.blocked_goroutine(goid), r.syscall_goroutine(goid)) {
            (Some(b), _) => format!(
                "goroutine {goid}\n{}, {}{}",
                b.wait_reason,
                if b.blocked_before_attach { ">" } else { "" },
                human_ns(b.blocked_ns)
            ),
            (None, Some(_)) => format!("goroutine {goid}\nsyscall / cgo"),
            _ => format!("goroutine {goid}"),
        };
        self.node(NodeKind::Goroutine(goid), label)
    }

    fn object(&mut self, addr: &str, kind: &str) -> usize {
        self.node(
            NodeKind::Object {
                addr: addr.to_string(),
                kind: kind.to_string(),
            },
            format!("{kind}\n{addr}"),
        )
    }

    /// The graph of one finding.
    pub fn of_finding(r: &ReportView, f: &FindingView) -> Self {
        let mut g = Graph::default();
        // The chain's goroutines first (they carry the edges), then the rest of the finding's.
        let mut goids: Vec<u64> = f.chain.iter().map(|l| l.goid).collect();
        for &id in &f.goroutines {
            if !goids.contains(&id) {
                goids.push(id);
            }
        }
        let shown = goids.len().min(MAX_GOROUTINES.max(f.chain.len()));
        for &goid in &goids[..shown] {
            let gi = g.goroutine(r, goid);
            let Some(b) = r.blocked_goroutine(goid) else {
                continue;
            };
            let objects = b.waited_on();
            if objects.is_empty() && !matches!(b.object_kind.as_str(), "none" | "other" | "") {
                let u = g.node(
                    NodeKind::Unknown {
                        goid,
                        kind: b.object_kind.clone(),
                    },
                    format!("{}\n(address unknown)", b.object_kind),
                );
                g.edge(gi, u, Rel::Waits, None);
            }
            for addr in objects.into_iter().take(MAX_OBJECTS_PER_G) {
                let kind = if b.wait_chans.is_empty() {
                    b.object_kind.as_str()
                } else {
                    "chan"
                };
                let oi = g.object(addr, kind);
                g.edge(gi, oi, Rel::Waits, None);
            }
        }
        // A finding lists at most a few goroutines of many (`count` says how many).
        let total = goids.len().max(f.count);
        if total > shown {
            let n = total - shown;
            g.node(NodeKind::More(n), format!("+{n} more\ngoroutine(s)"));
        }

        // The chain: each link waits on its object, which the next link holds or would serve.
        let cycle = f.chain_is_cycle();
        let n = f.chain.len();
        for (i, link) in f.chain.iter().enumerate() {
            let Some(by) = &link.next_by else { continue };
            let next = &f.chain[(i + 1) % n];
            if i + 1 == n && !cycle {
                continue;
            }
            let from = g.goroutine(r, link.goid);
            let to = g.goroutine(r, next.goid);
            let kind = link.object_kind.clone().unwrap_or_default();
            let rel = if is_lock(&kind) {
                Rel::HeldBy
            } else {
                Rel::ServedBy
            };
            let mut path = vec![];
            match link.object.as_deref().filter(|o| !is_null_addr(o)) {
                Some(addr) => {
                    let kind = if kind.is_empty() || kind == "select" {
                        "chan"
                    } else {
                        &kind
                    };
                    let oi = g.object(addr, kind);
                    path.push(g.edge(from, oi, Rel::Waits, None));
                    path.push(g.edge(oi, to, rel, Some(by.clone())));
                }
                None => path.push(g.edge(from, to, rel, Some(by.clone()))),
            }
            if cycle {
                for e in path {
                    g.edges[e].cycle = true;
                    let (a, b) = (g.edges[e].from, g.edges[e].to);
                    g.nodes[a].cycle = true;
                    g.nodes[b].cycle = true;
                }
            }
        }

        // The root cause.
        if cycle {
            for node in g.nodes.iter_mut().filter(|n| n.cycle) {
                node.root = true;
            }
        } else if let Some(last) = f.chain.last().filter(|_| n >= 2) {
            let root = g.goroutine(r, last.goid);
            g.nodes[root].root = true;
        } else {
            // A lone wait: the object nobody releases or serves, else the goroutine itself
            // (select {}, a nil channel, a system call).
            let objects: Vec<usize> = (0..g.nodes.len())
                .filter(|&i| {
                    matches!(
                        g.nodes[i].kind,
                        NodeKind::Object { .. } | NodeKind::Unknown { .. }
                    )
                })
                .collect();
            let roots = if objects.is_empty() {
                (0..g.nodes.len())
                    .filter(|&i| matches!(g.nodes[i].kind, NodeKind::Goroutine(_)))
                    .collect()
            } else {
                objects
            };
            for i in roots {
                g.nodes[i].root = true;
            }
        }
        g
    }

    /// Goroutine → object → goroutine → … back to the first: the cycle's node keys in order,
    /// as the graph's edges give it (for tests; empty when there is none).
    pub fn cycle_keys(&self) -> Vec<String> {
        let Some(start) = self.edges.iter().find(|e| e.cycle) else {
            return Vec::new();
        };
        let mut keys = vec![self.nodes[start.from].key()];
        let mut at = start.to;
        while at != start.from && keys.len() <= self.nodes.len() {
            keys.push(self.nodes[at].key());
            match self.edges.iter().find(|e| e.cycle && e.from == at) {
                Some(e) => at = e.to,
                None => return Vec::new(),
            }
        }
        keys
    }

    fn node_props(&self, prefix: &str, i: usize) -> String {
        let n = &self.nodes[i];
        let mut class = String::from("node");
        let data = match &n.kind {
            NodeKind::Goroutine(goid) => {
                class.push_str(" goroutine");
                format!(" data-goid=\"{goid}\"")
            }
            NodeKind::Object { addr, kind } => {
                class.push_str(" object");
                format!(" data-object=\"{}\" data-kind=\"{}\"", esc(addr), esc(kind))
            }
            NodeKind::Unknown { kind, .. } => {
                class.push_str(" object unknown");
                format!(" data-kind=\"{}\"", esc(kind))
            }
            NodeKind::More(k) => {
                class.push_str(" more");
                format!(" data-more=\"{k}\"")
            }
        };
        if n.root {
            class.push_str(" root");
        }
        if n.cycle {
            class.push_str(" cycle");
        }
        format!(
            "class=\"{class}\" id=\"{prefix}-{}\" data-node=\"{}\"{data} data-root=\"{}\" \
             data-cycle=\"{}\"",
            esc(&n.key()),
            esc(&n.key()),
            n.root,
            n.cycle
        )
    }

    fn edge_props(&self, e: &Edge) -> String {
        let mut class = format!("edge {}", e.rel.word().replace(' ', "-"));
        if e.cycle {
            class.push_str(" cycle");
        }
        if let Some(by) = &e.by {
            class.push(' ');
            class.push_str(by);
        }
        format!(
            "class=\"{class}\" data-from=\"{}\" data-to=\"{}\" data-rel=\"{}\" data-cycle=\"{}\"",
            esc(&self.nodes[e.from].key()),
            esc(&self.nodes[e.to].key()),
            e.rel.word(),
            e.cycle
        )
    }

    /// The graph as an `<svg>` element, or None when it has no node (or, should layout-rs's
    /// placer fail an internal assertion, when even its plain placement cannot lay it out).
    pub fn to_svg(&self, prefix: &str, title: &str) -> Option<String> {
        if self.nodes.is_empty() {
            return None;
        }
        // layout-rs asserts its invariants: a graph it cannot lay out must not take the report
        // down with it. Its full layout first, then its plain row placement.
        [false, true].into_iter().find_map(|plain| {
            std::panic::catch_unwind(|| {
                let mut vg = self.visual_graph(prefix);
                let mut canvas = super::svg::SvgCanvas::new(prefix);
                vg.do_it(false, false, plain, &mut canvas);
                canvas.finish(title)
            })
            .ok()
        })
    }

    fn visual_graph(&self, prefix: &str) -> VisualGraph {
        let dir = Orientation::TopToBottom;
        let mut vg = VisualGraph::new(dir);
        let look = StyleAttr::new(Color::fast("black"), 1, None, 8, FONT);
        let handles: Vec<_> = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                let shape = match n.kind {
                    NodeKind::Object { .. } | NodeKind::Unknown { .. } => {
                        ShapeKind::new_circle(&n.label)
                    }
                    _ => ShapeKind::new_box(&n.label),
                };
                let size = get_shape_size(dir, &shape, FONT, false);
                let props = self.node_props(prefix, i);
                vg.add_node(Element::create_with_properties(
                    shape,
                    look.clone(),
                    dir,
                    size,
                    props,
                ))
            })
            .collect();
        for e in &self.edges {
            let style = if e.by.as_deref() == Some(crate::detect::INFERRED) {
                LineStyleKind::Dashed
            } else {
                LineStyleKind::Normal
            };
            let arrow = Arrow::with_properties(
                LineEndKind::None,
                LineEndKind::Arrow,
                style,
                // Unlabelled for the layout; svg.rs labels it from `data-rel`.
                "",
                &look,
                self.edge_props(e),
                &None,
                &None,
            );
            vg.add_edge(arrow, handles[e.from], handles[e.to]);
        }
        vg
    }
}
