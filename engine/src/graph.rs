//! The resource graph: `host.H -> backend.B@H -> model.M@H`, plus an edge from every placement
//! of a model to the placements that depend on it. Built from placements with petgraph; rendered
//! as DOT or JSON; walked by the planner and the executor. It holds addresses, not config.

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_state::Address;
use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use serde::Serialize;

use crate::config::Config;
use crate::placement::Placement;

/// What a graph node stands for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Host,
    Backend,
    Model,
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub address: Address,
    pub kind: NodeKind,
    /// The host the resource lives on.
    pub host: String,
    /// The host, backend or model id.
    pub id: String,
}

/// Why one node comes before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// The target runs on the source (host -> backend -> model).
    RunsOn,
    /// The target model `depends_on` the source model.
    DependsOn,
}

/// The resource graph of one config and its placements.
#[derive(Debug, Clone, Default)]
pub struct ResourceGraph {
    graph: StableDiGraph<Node, EdgeKind>,
    index: HashMap<Address, NodeIndex>,
}

impl ResourceGraph {
    /// Builds the graph of the active placements. Fails with the whole path of a cycle.
    pub fn build(config: &Config, placements: &[Placement]) -> Result<ResourceGraph, Vec<Address>> {
        let mut g = ResourceGraph::default();
        for host in config.hosts.iter().filter(|h| h.enabled) {
            let id = &host.id.value;
            g.add(Node {
                address: Address::host(id),
                kind: NodeKind::Host,
                host: id.clone(),
                id: id.clone(),
            });
        }
        let active: Vec<&Placement> = placements.iter().filter(|p| p.active).collect();
        for p in &active {
            let host = g.index[Address::host(&p.host).as_str()];
            let backend_addr = Address::backend(&p.backend, &p.host);
            let backend = match g.index.get(backend_addr.as_str()) {
                Some(&b) => b,
                None => {
                    let b = g.add(Node {
                        address: backend_addr,
                        kind: NodeKind::Backend,
                        host: p.host.clone(),
                        id: p.backend.clone(),
                    });
                    g.graph.add_edge(host, b, EdgeKind::RunsOn);
                    b
                }
            };
            let model = g.add(Node {
                address: p.address(),
                kind: NodeKind::Model,
                host: p.host.clone(),
                id: p.model.clone(),
            });
            g.graph.add_edge(backend, model, EdgeKind::RunsOn);
        }
        let mut by_model: HashMap<&str, Vec<&Placement>> = HashMap::new();
        for p in &active {
            by_model.entry(p.model.as_str()).or_default().push(p);
        }
        for p in &active {
            let Some(model) = config.model(&p.model) else {
                continue;
            };
            let target = g.index[p.address().as_str()];
            for dep in &model.depends_on {
                let Some(deps) = by_model.get(dep.value.as_str()) else {
                    continue;
                };
                let same_host: Vec<&&Placement> =
                    deps.iter().filter(|d| d.host == p.host).collect();
                let sources: Vec<&&Placement> = if same_host.is_empty() {
                    deps.iter().collect()
                } else {
                    same_host
                };
                for d in sources {
                    let source = g.index[d.address().as_str()];
                    g.graph.add_edge(source, target, EdgeKind::DependsOn);
                }
            }
        }
        match g.cycle() {
            Some(path) => Err(path),
            None => Ok(g),
        }
    }

    fn add(&mut self, node: Node) -> NodeIndex {
        let address = node.address.clone();
        let index = self.graph.add_node(node);
        self.index.insert(address, index);
        index
    }

    /// Every node, ordered by address.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self.graph.node_weights().collect();
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        nodes
    }

    pub fn node(&self, address: &str) -> Option<&Node> {
        self.index.get(address).map(|&i| &self.graph[i])
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every edge as (from, to, kind), ordered.
    pub fn edges(&self) -> Vec<(&Address, &Address, EdgeKind)> {
        let mut edges: Vec<(&Address, &Address, EdgeKind)> = self
            .graph
            .edge_references()
            .map(|e| {
                (
                    &self.graph[e.source()].address,
                    &self.graph[e.target()].address,
                    *e.weight(),
                )
            })
            .collect();
        edges.sort();
        edges
    }

    /// Addresses this node waits for.
    pub fn dependencies(&self, address: &str) -> Vec<&Address> {
        self.neighbours(address, Direction::Incoming)
    }

    /// Addresses that wait for this node.
    pub fn dependents(&self, address: &str) -> Vec<&Address> {
        self.neighbours(address, Direction::Outgoing)
    }

    fn neighbours(&self, address: &str, dir: Direction) -> Vec<&Address> {
        let Some(&i) = self.index.get(address) else {
            return Vec::new();
        };
        let set: BTreeSet<&Address> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| &self.graph[n].address)
            .collect();
        set.into_iter().collect()
    }

    /// Every address reachable from `address` along edges (what a failure of it blocks).
    pub fn downstream(&self, address: &str) -> BTreeSet<&Address> {
        let mut out = BTreeSet::new();
        let Some(&start) = self.index.get(address) else {
            return out;
        };
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for next in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if out.insert(&self.graph[next].address) {
                    stack.push(next);
                }
            }
        }
        out
    }

    /// The whole path of a cycle, if there is one: `[a, b, ..., a]`.
    pub fn cycle(&self) -> Option<Vec<Address>> {
        let sccs = tarjan_scc(&self.graph);
        let component = sccs.into_iter().find(|c| c.len() > 1)?;
        let path = cycle_path(&self.graph, &component, |n| self.graph[n].address.clone());
        Some(
            path.into_iter()
                .map(|n| self.graph[n].address.clone())
                .collect(),
        )
    }

    /// Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out =
            String::from("digraph berth {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        for node in self.nodes() {
            let shape = match node.kind {
                NodeKind::Host => "box3d",
                NodeKind::Backend => "component",
                NodeKind::Model => "box",
            };
            out.push_str(&format!("  {:?} [shape={shape}];\n", node.address.as_str()));
        }
        for (from, to, kind) in self.edges() {
            let style = match kind {
                EdgeKind::RunsOn => "",
                EdgeKind::DependsOn => " [style=dashed, label=\"depends_on\"]",
            };
            out.push_str(&format!(
                "  {:?} -> {:?}{style};\n",
                from.as_str(),
                to.as_str()
            ));
        }
        out.push_str("}\n");
        out
    }

    /// The `--format json` form.
    pub fn to_json(&self) -> serde_json::Value {
        let nodes: Vec<&Node> = self.nodes();
        let edges: Vec<serde_json::Value> = self
            .edges()
            .into_iter()
            .map(|(from, to, kind)| serde_json::json!({ "from": from, "to": to, "kind": kind }))
            .collect();
        serde_json::json!({ "nodes": nodes, "edges": edges })
    }
}

/// A closed walk `[a, ..., a]` through a strongly connected component of two or more nodes,
/// starting at its smallest node by `key` and taking the shortest way back (breadth-first).
pub fn cycle_path<N, E, G, K>(
    graph: &G,
    component: &[NodeIndex<u32>],
    key: impl Fn(NodeIndex<u32>) -> K,
) -> Vec<NodeIndex<u32>>
where
    G: CycleGraph<N, E>,
    K: Ord,
{
    let start = *component
        .iter()
        .min_by_key(|n| key(**n))
        .expect("non-empty component");
    let members: HashSet<NodeIndex> = component.iter().copied().collect();
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph
            .successors(node)
            .into_iter()
            .filter(|n| members.contains(n))
            .collect();
        next.sort_by_key(|n| key(*n));
        for n in next {
            if n == start {
                let mut path = vec![node];
                let mut cur = node;
                while cur != start {
                    cur = prev[&cur];
                    path.push(cur);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(n) {
                e.insert(node);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}

/// The one thing [`cycle_path`] needs of a graph.
pub trait CycleGraph<N, E> {
    fn successors(&self, node: NodeIndex) -> Vec<NodeIndex>;
}

impl<N, E> CycleGraph<N, E> for StableDiGraph<N, E> {
    fn successors(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.neighbors(node).collect()
    }
}

impl<N, E> CycleGraph<N, E> for petgraph::graph::DiGraph<N, E> {
    fn successors(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.neighbors(node).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petgraph::graph::DiGraph;

    #[test]
    fn cycle_path_is_the_whole_loop_from_its_smallest_node() {
        // d -> b -> c -> d is the cycle; a feeds into it and e hangs off it.
        let mut g: DiGraph<&str, ()> = DiGraph::new();
        let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|n| g.add_node(n));
        g.extend_with_edges([(a, b), (d, b), (b, c), (c, d), (c, e)]);
        let scc = tarjan_scc(&g).into_iter().find(|c| c.len() > 1).unwrap();
        let path: Vec<&str> = cycle_path(&g, &scc, |n| g[n])
            .into_iter()
            .map(|n| g[n])
            .collect();
        assert_eq!(path, ["b", "c", "d", "b"]);
    }

    #[test]
    fn cycle_path_takes_the_shortest_way_back() {
        let mut g: DiGraph<&str, ()> = DiGraph::new();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| g.add_node(n));
        g.extend_with_edges([(a, b), (b, c), (c, d), (d, a), (b, a)]);
        let scc = tarjan_scc(&g).into_iter().find(|c| c.len() > 1).unwrap();
        let path: Vec<&str> = cycle_path(&g, &scc, |n| g[n])
            .into_iter()
            .map(|n| g[n])
            .collect();
        assert_eq!(path, ["a", "b", "a"]);
    }
}
