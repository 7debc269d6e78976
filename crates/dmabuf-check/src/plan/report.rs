//! A plan as text for people and as JSON for scripts (`docs/cli.md` lists the fields).

use dmabuf::AttachPlan;
use serde_json::{Value, json};

use super::measure::FrameCost;
use super::{Allocation, Plan, Scheme, SchemeKind, Verdict, Who, device_words};

fn plan_name(p: AttachPlan) -> &'static str {
    match p {
        AttachPlan::Direct => "direct",
        AttachPlan::Iommu => "iommu",
        AttachPlan::Bounce => "bounce",
        AttachPlan::PeerToPeer => "p2p",
    }
}

fn plan_words(p: AttachPlan) -> &'static str {
    match p {
        AttachPlan::Direct => "addresses it directly",
        AttachPlan::Iommu => "through its IOMMU",
        AttachPlan::Bounce => "bounced through swiotlb (a copy at every map and unmap)",
        AttachPlan::PeerToPeer => "peer-to-peer",
    }
}

fn size_words(n: u64) -> String {
    dmabuf_sim::ByteSize(n).to_string()
}

fn buffers(s: &Scheme) -> Vec<(&'static str, &Allocation)> {
    match &s.kind {
        SchemeKind::Shared { buffer } => vec![(super::schemes::FIRST, buffer)],
        SchemeKind::Copy { first, second, .. } => {
            vec![(super::schemes::FIRST, first), (super::schemes::SECOND, second)]
        }
    }
}

fn allocation_words(a: &Allocation) -> String {
    format!(
        "[{:#x}, {:#x}) in {}, {} piece{}, {}",
        a.span.0,
        a.span.1,
        a.regions.join(" and "),
        a.pieces,
        if a.pieces == 1 { "" } else { "s" },
        a.attr
    )
}

fn cost_words(c: &FrameCost) -> String {
    let mut s = format!("{} cycles", c.cycles);
    if c.maintenance > 0 {
        s += &format!(" (maintenance and bounces {}", c.maintenance);
        if c.bounce_bytes > 0 {
            s += &format!(", {} bounced", size_words(c.bounce_bytes));
        }
        s.push(')');
    }
    s
}

/// What a scheme that was not chosen is, in one line: why it cannot be used, or what it
/// costs.
fn other_words(s: &Scheme) -> String {
    let refused: Vec<&super::AttachOutcome> = s.attach.iter().filter(|a| a.result.is_err()).collect();
    if let Some(first) = refused.first().and_then(|a| a.result.as_ref().err()) {
        let who: Vec<String> = refused
            .iter()
            .filter_map(|a| a.result.as_ref().err().map(|e| format!("{} ({})", a.party, e.rule())))
            .collect();
        return format!("refused: {}; {first}", who.join(", "));
    }
    if let Some(u) = &s.unusable {
        return format!("unusable: {u}");
    }
    let cost = s.cost.as_ref().map_or_else(String::new, |c| format!("{} per frame", cost_words(&c.linux)));
    let bounced: Vec<&str> =
        s.attach.iter().filter(|a| a.result == Ok(AttachPlan::Bounce)).map(|a| a.party.as_str()).collect();
    match s.verdict() {
        Verdict::CopyFree => format!("also without a copy, {cost}"),
        Verdict::Bounce => format!("{} bounced through swiotlb, {cost}", bounced.join(", ")),
        Verdict::Uncached => format!(
            "a write-combined CPU mapping, {cost}; but upstream Linux has no `uncached` heap (vendor and Android kernels do)"
        ),
        Verdict::Copy => cost,
        Verdict::Refused => String::new(),
    }
}

/// The plan for people: the parties, the answer and why, the others, and the protocol.
pub fn to_text(plan: &Plan, platform_line: &str) -> String {
    let mut o = format!(
        "plan on {}, a {} buffer; the parties in the order they act each frame:\n",
        plan.platform.name,
        size_words(plan.size)
    );
    let width = plan.parties.iter().map(|p| p.name.len()).max().unwrap_or(3);
    for p in &plan.parties {
        let what = format!(
            "{}{}",
            match p.access {
                super::Access::Read => "reads",
                super::Access::Write => "writes",
                super::Access::ReadWrite => "reads and writes",
            },
            if p.kept_by_platform {
                ", keeps its mapping (the platform says it always does)"
            } else if p.kept {
                ", keeps its mapping"
            } else {
                ""
            }
        );
        let dev = match p.who {
            Who::Device(i) => device_words(&plan.platform, i),
            Who::Cpu => "through the buffer's mmap and the sync ioctl".into(),
        };
        o += &format!("  {:width$}  {what}: {dev}\n", p.name);
    }
    o.push('\n');
    let chosen = plan.chosen();
    match chosen {
        Some(s) => {
            let kind = match s.verdict() {
                Verdict::CopyFree => "every party uses it without a copy".to_string(),
                v => format!("no placement works without a copy; the cheapest fallback ({})", v.name()),
            };
            o += &format!("answer: {}: {kind}\n", s.describe());
            for (name, a) in buffers(s) {
                o += &format!("  {name}: {}\n", allocation_words(a));
            }
            for a in &s.attach {
                if let Ok(p) = &a.result {
                    o += &format!("  {} reaches {}: {}\n", a.party, a.buffer, plan_words(*p));
                }
            }
            if let Some(c) = &s.cost {
                o += &format!(
                    "  per frame: {} under upstream Linux's maintenance, {} under the minimal one\n",
                    cost_words(&c.linux),
                    cost_words(&c.minimal)
                );
            }
        }
        None => o += "answer: none: no scheme works\n",
    }
    let others: Vec<&Scheme> =
        plan.schemes.iter().enumerate().filter(|(i, _)| Some(*i) != plan.answer).map(|(_, s)| s).collect();
    if !others.is_empty() {
        o += "\nthe others:\n";
        for s in others {
            o += &format!("  {}: {}\n", s.describe(), other_words(s));
        }
    }
    if let Some(scenario) = plan.scenario(platform_line) {
        o.push('\n');
        o += &proof_words(plan);
        o.push('\n');
        for l in scenario.lines() {
            o += &format!("  {l}\n");
        }
    }
    o
}

fn proof_words(plan: &Plan) -> String {
    let runs: Vec<String> = plan
        .proofs
        .iter()
        .map(|p| {
            let mut s = format!(
                "{} maintenance: {}, {} states, {:.2} s",
                p.maintenance,
                p.verdict.name(),
                p.states,
                p.elapsed.as_secs_f64()
            );
            if let Some(c) = &p.counterexample {
                s += &format!(" ({c})");
            }
            s
        })
        .collect();
    let head = if plan.proved() { "the protocol, proved by the explorer" } else { "the protocol, NOT proved" };
    format!("{head} at {} ({}):", size_words(plan.prove_size), runs.join("; "))
}

fn cost_json(c: &FrameCost) -> Value {
    json!({
        "cycles": c.cycles,
        "maintenance_cycles": c.maintenance,
        "maintenance_bytes": c.maintenance_bytes,
        "bounce_bytes": c.bounce_bytes,
    })
}

fn scheme_json(plan: &Plan, s: &Scheme) -> Value {
    let bufs: Vec<Value> = buffers(s)
        .into_iter()
        .map(|(name, a)| {
            json!({
                "name": name,
                "placement": a.placement.source(),
                "regions": a.regions,
                "range": [a.span.0, a.span.1],
                "pieces": a.pieces,
                "attr": a.attr,
            })
        })
        .collect();
    let attach: Vec<Value> = s
        .attach
        .iter()
        .map(|a| match &a.result {
            Ok(p) => json!({ "party": a.party, "buffer": a.buffer, "plan": plan_name(*p), "rule": null, "message": null }),
            Err(e) => {
                json!({ "party": a.party, "buffer": a.buffer, "plan": null, "rule": e.rule(), "message": e.to_string() })
            }
        })
        .collect();
    let (engine, before) = match &s.kind {
        SchemeKind::Copy { engine, at, .. } => {
            (json!(engine.name), json!(plan.parties.get(*at).map(|p| p.name.clone())))
        }
        SchemeKind::Shared { .. } => (Value::Null, Value::Null),
    };
    json!({
        "kind": match s.kind { SchemeKind::Shared { .. } => "shared", SchemeKind::Copy { .. } => "copy" },
        "verdict": s.verdict().name(),
        "description": s.describe(),
        "buffers": bufs,
        "engine": engine,
        "copy_before": before,
        "attach": attach,
        "cost": s.cost.as_ref().map(|c| json!({ "linux": cost_json(&c.linux), "minimal": cost_json(&c.minimal) })),
        "unusable": s.unusable,
    })
}

/// The plan for scripts.
pub fn to_json(plan: &Plan, platform_line: &str) -> Value {
    let parties: Vec<Value> = plan
        .parties
        .iter()
        .map(|p| {
            let device = match p.who {
                Who::Device(i) => {
                    let d = &plan.platform.devices[i];
                    json!({
                        "role": d.role.map(|r| r.as_str()),
                        "coherent": d.coherent,
                        "iommu": d.iommu,
                        "needs_contiguous": d.needs_contiguous,
                        "node": d.node,
                    })
                }
                Who::Cpu => Value::Null,
            };
            json!({
                "name": p.name,
                "access": p.access.name(),
                "kept": p.kept,
                "kept_by_platform": p.kept_by_platform,
                "device": device,
            })
        })
        .collect();
    let proof: Vec<Value> = plan
        .proofs
        .iter()
        .map(|p| {
            json!({
                "maintenance": p.maintenance,
                "verdict": p.verdict.name(),
                "states": p.states,
                "paths": p.paths,
                "seconds": p.elapsed.as_secs_f64(),
                "counterexample": p.counterexample,
            })
        })
        .collect();
    json!({
        "platform": plan.platform.name,
        "size": plan.size,
        "prove_size": plan.prove_size,
        "parties": parties,
        "verdict": plan.verdict().name(),
        "answer": plan.chosen().map(|s| scheme_json(plan, s)),
        "schemes": plan.schemes.iter().map(|s| scheme_json(plan, s)).collect::<Vec<_>>(),
        "scenario": plan.scenario(platform_line),
        "proof": proof,
        "proved": plan.proved(),
    })
}
