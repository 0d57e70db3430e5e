//! `pods::Resolver` on testkit nodes (network namespaces with veth pairs on a
//! bridge, like a CNI bridge): a pod IP leads to the host side of that pod's
//! veth, only on the node the pod runs on (two nodes built alike have pods
//! with the same interface numbers), and a deleted pod is no longer found.

use std::collections::HashMap;
use std::net::IpAddr;
use tap_worker::pods::Resolver;
use testkit::{Node, require_root};

fn resolve(node: &Node, ips: Vec<IpAddr>) -> HashMap<IpAddr, (String, u32)> {
    node.in_netns(move || {
        let mut r = Resolver::new().unwrap();
        r.resolve(&ips)
            .unwrap()
            .into_iter()
            .map(|(ip, i)| (ip, (i.name, i.ifindex)))
            .collect()
    })
    .unwrap()
}

#[test]
fn pod_ips_lead_to_their_host_veths_on_their_node_only() {
    if !require_root() {
        return;
    }
    let a = Node::new("rsa").unwrap();
    let b = Node::new("rsb").unwrap();
    let a1 = a.pod("one").unwrap();
    let a2 = a.pod("two").unwrap();
    let b1 = b.pod("one").unwrap();
    let b2 = b.pod("two").unwrap();
    let ips: Vec<IpAddr> = [&a1, &a2, &b1, &b2].iter().map(|p| p.ip.into()).collect();

    let on_a = resolve(&a, ips.clone());
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    assert_eq!(
        on_a[&IpAddr::from(a1.ip)],
        (a1.host_veth.clone(), a1.host_ifindex)
    );
    assert_eq!(
        on_a[&IpAddr::from(a2.ip)],
        (a2.host_veth.clone(), a2.host_ifindex)
    );
    let on_b = resolve(&b, ips.clone());
    assert_eq!(on_b.len(), 2, "{on_b:?}");
    assert_eq!(on_b[&IpAddr::from(b2.ip)].0, b2.host_veth);

    // Nothing to find: no IPs, or an address no pod has.
    assert!(resolve(&a, vec![]).is_empty());
    assert!(resolve(&a, vec!["192.0.2.1".parse().unwrap()]).is_empty());

    let gone = IpAddr::from(a2.ip);
    a.remove_pod(a2).unwrap();
    let on_a = resolve(&a, ips);
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert!(!on_a.contains_key(&gone));
}
