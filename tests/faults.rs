//! Every injectable fault must reach the numbers: a fault that silently does nothing would make
//! calibration and the nightly canary meaningless.

use lossdiff::config::RunConfig;
use lossdiff::train::{loss_bits, train};
use lossdiff::Fault;

fn run(inject: Fault) -> Vec<u32> {
    let mut c = RunConfig::preset("gate").unwrap();
    c.train.train_iters = 30;
    c.train.lr_warmup_iters = 5;
    // Short decay, so that faults acting after the decay horizon have steps to act on.
    c.train.lr_decay_iters = Some(20);
    c.train.inject = inject;
    loss_bits(&train(&c, "fault", &mut |_| {}).unwrap())
}

#[test]
fn every_fault_changes_the_loss_curve() {
    let clean = run(Fault::None);
    for fault in Fault::CATALOG {
        let faulty = run(fault);
        let first = clean.iter().zip(&faulty).position(|(a, b)| a != b);
        assert!(
            first.is_some(),
            "{} left the loss curve bit-identical",
            fault.name()
        );
    }
}

#[test]
fn faults_are_selectable_by_name_from_the_command_line() {
    let mut c = RunConfig::preset("gate").unwrap();
    c.apply_override("inject=softmax_scale_1pct").unwrap();
    assert_eq!(c.train.inject, Fault::SoftmaxScale1pct);
    let err = c
        .apply_override("inject=softmax_scale")
        .unwrap_err()
        .to_string();
    assert!(err.contains("softmax_scale_1pct"), "{err}");
}
