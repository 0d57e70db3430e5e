//! kubetap hub (gRPC ingest, bounded store, filter language, service map, HTTP API): not yet built; it arrives in step 3.
