//! Target `ops`: random operation sequences (apply, plan, complete, time, external
//! reports, snapshot/restore, stale completions) checked against the reference planner
//! after every step, by the same `run_ops` the proptest properties use
//! (tests/engine/ops.rs).
//!
//! Input: bytes that `arbitrary` decodes into generated models and operations with the
//! same shapes and weights as the proptest strategies in tests/engine/props.rs.

use arbitrary::Unstructured;

use super::gen::{below, Draw};
use super::ops::{run_ops, GChange, GModel, Op, KEYS};
use syncore::ModelKind;

/// Most operations decoded from one input.
pub const OPS_MAX: usize = 48;

/// Runs one input; `Err` is a finding.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Ok((models, ops)) = decode(data) else {
        return Ok(());
    };
    run_ops(&models, &ops)
}

/// Models and operations drawn from `data`.
pub fn decode(data: &[u8]) -> Draw<(Vec<GModel>, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let models = models(&mut u)?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < OPS_MAX {
        ops.push(op(&mut u)?);
    }
    Ok((models, ops))
}

/// One to four models; proxies and model-level dependencies point at smaller indices, as
/// `schema_strategy` makes them.
pub fn models(u: &mut Unstructured<'_>) -> Draw<Vec<GModel>> {
    let n = 1 + below(u, 4)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = match u.int_in_range(0u8..=9)? {
            0 => ModelKind::Passive,
            1 => ModelKind::External,
            _ => ModelKind::Actuated,
        };
        let mut links = Vec::new();
        for _ in 0..below(u, 3)? {
            let target = below(u, i + 1)?;
            let many = u.arbitrary()?;
            let proxy = u.ratio(3, 10)? && target < i;
            links.push((target, many, proxy));
        }
        let depends_on = if i > 0 && u.ratio(1, 5)? {
            Some(below(u, i)?)
        } else {
            None
        };
        out.push(GModel {
            kind,
            links,
            depends_on,
        });
    }
    Ok(out)
}

/// One change-set entry.
pub fn change(u: &mut Unstructured<'_>) -> Draw<GChange> {
    let mut refs = Vec::with_capacity(2);
    for _ in 0..2 {
        refs.push(
            (0..below(u, 3)?)
                .map(|_| u.arbitrary())
                .collect::<Draw<_>>()?,
        );
    }
    Ok(GChange {
        key: u.int_in_range(0..=KEYS - 1)?,
        delete: u.ratio(1, 5)?,
        model: u.arbitrary()?,
        v: u.arbitrary()?,
        refs,
    })
}

/// One operation, weighted as `op_strategy`: apply 3, run 4, advance 2, external 1,
/// restore 1, stale 1.
pub fn op(u: &mut Unstructured<'_>) -> Draw<Op> {
    Ok(match u.int_in_range(0u8..=11)? {
        0..=2 => Op::Apply(
            (0..1 + below(u, 5)?)
                .map(|_| change(u))
                .collect::<Draw<_>>()?,
        ),
        3..=6 => Op::Run(
            (0..1 + below(u, 7)?)
                .map(|_| u.arbitrary())
                .collect::<Draw<_>>()?,
        ),
        7 | 8 => Op::Advance(u.int_in_range(0..=2999)?),
        9 => Op::External(u.int_in_range(0..=KEYS - 1)?, u.arbitrary()?),
        10 => Op::Restore,
        _ => Op::Stale,
    })
}
