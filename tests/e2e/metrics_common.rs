//! Shared by the metrics tests (`prometheus`, `daemon`): HTTP GETs on loopback, the agent's
//! metrics address, and the text format parsed into samples.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use blockprobe_tests::Proc;

/// GET `url` (plain HTTP on loopback): the body, or an error for a non-200 answer.
pub fn get(url: &str) -> anyhow::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    Ok(agent.get(url).call()?.into_body().read_to_string()?)
}

/// The address an agent started with `--metrics` serves on, from its
/// `metrics at http://ADDR/metrics` line.
pub fn metrics_addr(agent: &mut Proc) -> SocketAddr {
    let line = agent
        .expect_stderr(Duration::from_secs(20), |l| {
            l.contains("metrics at http://")
        })
        .expect("the agent says where its metrics are");
    line.split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// One sample of a scrape.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text-format scrape (label values with `\"`, `\\` and `\n` escapes).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => {
                let (n, v) = line.split_once(' ').expect("name value");
                out.push(Sample {
                    name: n.to_string(),
                    labels: BTreeMap::new(),
                    value: v.trim().parse().expect("value"),
                });
                continue;
            }
        };
        let mut labels = BTreeMap::new();
        let mut chars = rest.char_indices().peekable();
        let end;
        loop {
            let start = match chars.peek() {
                Some(&(i, '}')) => {
                    end = i + 1;
                    break;
                }
                Some(&(i, ',')) => {
                    chars.next();
                    i + 1
                }
                Some(&(i, _)) => i,
                None => panic!("unterminated labels in {line:?}"),
            };
            let eq = rest[start..].find('=').expect("label =") + start;
            let key = rest[start..eq].to_string();
            while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                chars.next();
            }
            let mut val = String::new();
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, c)) => val.push(c),
                        None => break,
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.insert(key, val);
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value: rest[end..].trim().parse().expect("value"),
        });
    }
    out
}

/// The samples named `name` whose labels include every (key, value) of `want`.
pub fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// A TCP port free on loopback now (for a server that cannot be told to pick one itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn parses_the_text_format() {
    let s =
        parse("# HELP x y\nx{a=\"1\",b=\"q\\\"uo\\\\te\"} 2.5\nup 1\nh_bucket{le=\"+Inf\"} 3\n");
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].labels["b"], "q\"uo\\te");
    assert_eq!(s[0].value, 2.5);
    assert_eq!(find(&s, "h_bucket", &[("le", "+Inf")])[0].value, 3.0);
}
