//! Arbitrary bytes as a capture file, through the whole pipeline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tap_worker::capture::CaptureFile;
use tap_worker::{Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = CaptureFile::from_reader("fuzz".into(), Box::new(std::io::Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut out = Vec::new();
    while let Ok(Some(pkt)) = file.next_packet() {
        pipeline.packet(&pkt, &mut out);
        out.clear();
    }
    pipeline.finish(&mut out);
});
