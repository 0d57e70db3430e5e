//! A minimal Kafka broker for the Kafka oracle test, built on the
//! `kafka-protocol` crate: no broker installs from the registries kubetap uses,
//! so this stands in for one, and a real client (kafka-python) checks it
//! speaks the protocol well enough. It serves one node (itself) on
//! 127.0.0.1, creates topics (one partition each) on demand, keeps produced
//! record batches in memory (rewriting their base offsets) and answers
//! ApiVersions, Metadata, Produce, ListOffsets and Fetch, and a consumer
//! group of one member (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetFetch with nothing committed, OffsetCommit). Test-only: it lives
//! among the tests and is compiled into the oracle test binary alone.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The APIs served, each with the highest version offered.
const SERVED: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 8),
    (ApiKey::Fetch, 11),
    (ApiKey::ListOffsets, 5),
    (ApiKey::Metadata, 8),
    (ApiKey::ApiVersions, 3),
    (ApiKey::FindCoordinator, 2),
    (ApiKey::JoinGroup, 7),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 3),
    (ApiKey::LeaveGroup, 3),
    (ApiKey::OffsetFetch, 5),
    (ApiKey::OffsetCommit, 7),
];

/// One partition's log: record batches, each with its base offset rewritten.
#[derive(Default)]
struct Log {
    batches: Vec<Vec<u8>>,
    next: i64,
}

type Logs = Arc<Mutex<BTreeMap<String, Log>>>;

/// Starts the broker on an ephemeral loopback port; it serves until the process ends.
pub fn start() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test broker");
    let port = listener.local_addr().unwrap().port();
    let logs = Logs::default();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let logs = logs.clone();
            std::thread::spawn(move || serve(conn, port, &logs));
        }
    });
    port
}

fn serve(mut conn: TcpStream, port: u16, logs: &Logs) {
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let Some(reply) = answer(&msg, port, logs) else {
            return;
        };
        if reply.is_empty() {
            continue;
        }
        let mut out = (reply.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Decodes one request and encodes its response (header included); `None` ends the connection.
fn answer(msg: &[u8], port: u16, logs: &Logs) -> Option<Vec<u8>> {
    let key = i16::from_be_bytes([msg[0], msg[1]]);
    let version = i16::from_be_bytes([msg[2], msg[3]]);
    let api = ApiKey::try_from(key).ok()?;
    let mut buf = bytes::Bytes::copy_from_slice(msg);
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version)).ok()?;
    let mut out = bytes::BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .ok()?;
    let served = SERVED.iter().find(|(a, _)| *a == api);
    if api == ApiKey::ApiVersions && served.is_none_or(|&(_, max)| version > max) {
        // An ApiVersions request newer than served: answered with version 0 and the error.
        let resp = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(api_keys());
        resp.encode(&mut out, 0).ok()?;
        return Some(out.to_vec());
    }
    match api {
        ApiKey::ApiVersions => {
            ApiVersionsRequest::decode(&mut buf, version).ok()?;
            ApiVersionsResponse::default()
                .with_api_keys(api_keys())
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut buf, version).ok()?;
            let mut logs = logs.lock().unwrap();
            let wanted: Vec<String> = match req.topics {
                Some(ts) => ts
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
                None => logs.keys().cloned().collect(),
            };
            let mut topics = Vec::new();
            for t in wanted {
                logs.entry(t.clone()).or_default();
                topics.push(
                    MetadataResponseTopic::default()
                        .with_name(Some(name(&t)))
                        .with_partitions(vec![
                            MetadataResponsePartition::default()
                                .with_partition_index(0)
                                .with_leader_id(BrokerId(0))
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)]),
                        ]),
                );
            }
            MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(i32::from(port)),
                ])
                .with_controller_id(BrokerId(0))
                .with_cluster_id(Some(StrBytes::from_static_str("kubetap-test")))
                .with_topics(topics)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut buf, version).ok()?;
            let mut logs = logs.lock().unwrap();
            let mut responses = Vec::new();
            for t in req.topic_data {
                let log = logs.entry(t.name.0.to_string()).or_default();
                let base = log.next;
                for p in &t.partition_data {
                    append(log, p.records.as_deref().unwrap_or_default());
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(vec![
                            PartitionProduceResponse::default()
                                .with_index(0)
                                .with_base_offset(base),
                        ]),
                );
            }
            if req.acks == 0 {
                // Nothing is sent back: an empty reply tells `serve` so.
                return Some(Vec::new());
            }
            ProduceResponse::default()
                .with_responses(responses)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut buf, version).ok()?;
            let logs = logs.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let end = logs.get(&t.name.0.to_string()).map_or(0, |l| l.next);
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_timestamp(-1)
                                .with_offset(if p.timestamp == -2 { 0 } else { end })
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            ListOffsetsResponse::default()
                .with_topics(topics)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut buf, version).ok()?;
            let logs = logs.lock().unwrap();
            let mut responses = Vec::new();
            for t in req.topics {
                let log = logs.get(&t.topic.0.to_string());
                let mut partitions = Vec::new();
                for p in &t.partitions {
                    let end = log.map_or(0, |l| l.next);
                    let records: Vec<u8> = log
                        .map(|l| {
                            l.batches
                                .iter()
                                .filter(|b| last_offset(b) >= p.fetch_offset)
                                .flatten()
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default();
                    partitions.push(
                        PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_high_watermark(end)
                            .with_last_stable_offset(end)
                            .with_records(Some(records.into())),
                    );
                }
                responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(t.topic)
                        .with_partitions(partitions),
                );
            }
            FetchResponse::default()
                .with_responses(responses)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::FindCoordinator => {
            FindCoordinatorRequest::decode(&mut buf, version).ok()?;
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(port))
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::JoinGroup => {
            // A group of one: the member that joins leads it and assigns the partitions.
            let req = JoinGroupRequest::decode(&mut buf, version).ok()?;
            let member = StrBytes::from_static_str("member-1");
            let first = req.protocols.first()?;
            JoinGroupResponse::default()
                .with_generation_id(1)
                .with_protocol_type(Some(req.protocol_type.clone()))
                .with_protocol_name(Some(first.name.clone()))
                .with_leader(member.clone())
                .with_member_id(member.clone())
                .with_members(vec![
                    JoinGroupResponseMember::default()
                        .with_member_id(member)
                        .with_metadata(first.metadata.clone()),
                ])
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::SyncGroup => {
            let req = SyncGroupRequest::decode(&mut buf, version).ok()?;
            let (protocol_type, protocol_name) =
                (req.protocol_type.clone(), req.protocol_name.clone());
            let assignment = req
                .assignments
                .into_iter()
                .next()
                .map(|a| a.assignment)
                .unwrap_or_default();
            SyncGroupResponse::default()
                .with_protocol_type(protocol_type)
                .with_protocol_name(protocol_name)
                .with_assignment(assignment)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::Heartbeat => {
            HeartbeatRequest::decode(&mut buf, version).ok()?;
            HeartbeatResponse::default()
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::LeaveGroup => {
            LeaveGroupRequest::decode(&mut buf, version).ok()?;
            LeaveGroupResponse::default()
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::OffsetFetch => {
            // Nothing was committed before: every partition starts from its reset offset.
            let req = OffsetFetchRequest::decode(&mut buf, version).ok()?;
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|&i| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(i)
                                .with_committed_offset(-1)
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default()
                .with_topics(topics)
                .encode(&mut out, version)
                .ok()?;
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::decode(&mut buf, version).ok()?;
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                        })
                        .collect();
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetCommitResponse::default()
                .with_topics(topics)
                .encode(&mut out, version)
                .ok()?;
        }
        _ => return None,
    }
    Some(out.to_vec())
}

fn api_keys() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|&(api, max)| {
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(api.valid_versions().min.min(max))
                .with_max_version(max)
        })
        .collect()
}

/// Appends a partition's record batches (magic 2) to its log, each given the next offsets.
fn append(log: &mut Log, mut records: &[u8]) {
    while records.len() >= 61 {
        let size = u32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        let Some(batch) = records.get(..12 + size) else {
            return;
        };
        let mut batch = batch.to_vec();
        // The base offset is outside the batch's CRC: the broker assigns it.
        batch[..8].copy_from_slice(&log.next.to_be_bytes());
        let last_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
        log.next += i64::from(last_delta) + 1;
        log.batches.push(batch);
        records = &records[12 + size..];
    }
}

fn last_offset(batch: &[u8]) -> i64 {
    let base = i64::from_be_bytes(batch[..8].try_into().unwrap());
    base + i64::from(i32::from_be_bytes(batch[23..27].try_into().unwrap()))
}
