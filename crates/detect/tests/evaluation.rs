//! The detectors against a seeded synthetic workforce (small; `portcullis eval`
//! runs the full 5,000 users × 90 days).

use portcullis_detect::scenario::{Params, VDI_ASN, baseline_new_country, evaluate, generate};
use portcullis_detect::{Config, Engine};

#[test]
fn every_detector_reaches_the_targets_on_a_small_workforce() {
    let scenario = generate(Params { users: 800, days: 90, seed: 7, attacks_per_thousand: 25 });
    let mut config = Config::default();
    config.egress_asns.push(VDI_ASN);
    config.suspicious_vpn.managed_devices = vec!["LT-*".into(), "TAB-*".into()];
    let mut engine = Engine::new(config);
    let alerts = engine.ingest_all(&scenario.events);
    let baseline = baseline_new_country(&scenario.events);
    let scores = evaluate(&scenario, &alerts, &baseline);
    for s in &scores {
        eprintln!("{:50} P {:.3} R {:.3} F1 {:.3} ({} alerts)", s.detector, s.precision, s.recall, s.f1, s.alerts);
    }
    let (ours, base) = (&scores[scores.len() - 2], &scores[scores.len() - 1]);
    for s in &scores[..scores.len() - 1] {
        assert!(s.precision >= 0.85 && s.recall >= 0.85, "{s:?}");
    }
    assert!(ours.f1 > base.f1 + 0.2, "{ours:?} vs {base:?}");
    // Same seed, same events, same alerts.
    let again = generate(Params { users: 800, days: 90, seed: 7, attacks_per_thousand: 25 });
    assert_eq!(again.events, scenario.events);
}
