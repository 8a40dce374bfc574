//! gRPC message framing for the ADS streams, in place of tonic's codec.
//!
//! Requests come off the HTTP/2 body into a buffer that is let go after a
//! large message (an EDS ACK naming every cluster), so a stream does not keep
//! its largest request's worth of memory forever. The fleet simulator reads
//! responses the same way. Responses come from the
//! stream's task as messages holding shared resource bodies and are written
//! out only as HTTP/2 asks for more data, a chunk at a time: a stream holds at
//! most one chunk of copied bytes, and large bodies (a route configuration
//! sent to every proxy) go to the socket straight from the cache.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::Status;

use shmesh_cache::responses::{ChunkWriter, Chunked};

/// The gRPC message prefix: compressed flag and length.
pub const PREFIX: usize = 5;

/// Writes the prefix of an uncompressed gRPC message of `len` bytes: the
/// compression flag (none), then the length, big-endian.
pub fn put_prefix(len: usize, buf: &mut impl BufMut) {
    buf.put_u8(0);
    buf.put_u32(len as u32);
}

/// Largest message accepted (Envoy's EDS request for a very large mesh names
/// every cluster).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Copied response bytes gathered before they are handed to HTTP/2.
const CHUNK: usize = 32 * 1024;
/// A receive buffer grown beyond this is dropped once empty.
const KEEP_BUFFER: usize = 16 * 1024;

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Status>;

/// The messages of a gRPC body (a request's, or a response's in the
/// simulator), decoded one at a time.
pub struct MessageStream<T> {
    body: BoxBody,
    buf: BytesMut,
    ended: bool,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: prost::Message + Default> MessageStream<T> {
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        MessageStream {
            body: body
                .map_err(|e| Status::from_error(e.into()))
                .boxed_unsync(),
            buf: BytesMut::new(),
            ended: false,
            _t: std::marker::PhantomData,
        }
    }

    /// The next message; `None` when the peer has closed its side (with an
    /// OK status, if it sent one).
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(msg) = self.take()? {
                return Ok(Some(msg));
            }
            if self.ended {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::internal("body ended inside a message"))
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.put(data),
                    Err(frame) => {
                        let status = frame
                            .into_trailers()
                            .ok()
                            .and_then(|t| Status::from_header_map(&t));
                        if let Some(status) = status.filter(|s| s.code() != tonic::Code::Ok) {
                            return Err(status);
                        }
                    }
                },
                Some(Err(status)) => return Err(status),
                None => self.ended = true,
            }
        }
    }

    /// Decodes a message if the buffer holds a whole one.
    fn take(&mut self) -> Result<Option<T>, Status> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed gRPC messages are not supported",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(Status::resource_exhausted(format!(
                "message of {len} bytes is over the limit of {MAX_MESSAGE}"
            )));
        }
        if self.buf.len() < PREFIX + len {
            // Room for what is announced, but only what has arrived decides
            // beyond a mebibyte: a header alone must not allocate 64 MiB.
            let missing = PREFIX + len - self.buf.len();
            self.buf.reserve(missing.min(1024 * 1024));
            return Ok(None);
        }
        self.buf.advance(PREFIX);
        // Decoded from shared bytes: `bytes` fields are slices of the buffer,
        // not copies.
        let msg = T::decode(self.buf.split_to(len).freeze())
            .map_err(|e| Status::internal(format!("cannot decode message: {e}")));
        if self.buf.is_empty() {
            // Requests are rare once a proxy is in sync: hold no buffer between them.
            self.buf = BytesMut::new();
        } else if self.buf.capacity() > KEEP_BUFFER && self.buf.len() <= KEEP_BUFFER / 2 {
            // Let go of the large message's room, keeping what followed it.
            self.buf = BytesMut::from(&self.buf[..]);
        }
        msg.map(Some)
    }
}

/// A response body fed by the stream's task: each message is framed and
/// written out as HTTP/2 polls for data; the stream ends with the status the
/// task sent, or OK when the task drops its sender.
pub struct ResponseBody<M> {
    rx: mpsc::Receiver<Result<M, Status>>,
    current: Option<(M, usize)>,
    out: ChunkWriter,
    done: bool,
}

impl<M> ResponseBody<M> {
    pub fn new(rx: mpsc::Receiver<Result<M, Status>>) -> Self {
        ResponseBody {
            rx,
            current: None,
            out: ChunkWriter::default(),
            done: false,
        }
    }
}

/// The HTTP response for a stream: gRPC headers and `body`.
pub fn response<M: Chunked + Send + Unpin + 'static>(
    body: ResponseBody<M>,
) -> http::Response<tonic::body::Body> {
    let mut resp = http::Response::new(tonic::body::Body::new(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", HeaderValue::from_static("13"));
    }
    map
}

impl<M: Chunked + Unpin> ResponseBody<M> {
    /// Writes the current message until a chunk is full or it ends.
    fn write_some(&mut self) {
        let Some((msg, step)) = &mut self.current else {
            return;
        };
        if *step == 0 {
            put_prefix(msg.encoded_len(), self.out.small());
        }
        let steps = msg.steps();
        while *step < steps && self.out.pending() < CHUNK && !self.out.has_chunks() {
            msg.write_step(*step, &mut self.out);
            *step += 1;
        }
        if *step == steps {
            self.current = None;
            self.out.flush();
        } else if self.out.pending() >= CHUNK {
            self.out.flush();
        }
    }
}

impl<M: Chunked + Unpin> Body for ResponseBody<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.out.next_chunk() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.current.is_some() {
                this.write_some();
                continue;
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(msg))) => this.current = Some((msg, 0)),
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let ok = Status::new(tonic::Code::Ok, "");
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&ok)))));
                }
                Poll::Pending => {
                    // Idle until the next response: hold no buffer meanwhile.
                    this.out.release();
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.current.is_none() && !self.out.has_chunks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use shmesh_cache::responses::WireDiscoveryResponse;
    use shmesh_cache::{Resource, ResourceType};

    fn framed(msg: &impl prost::Message) -> Vec<u8> {
        frame(msg.encode_to_vec())
    }

    fn frame(body: Vec<u8>) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[tokio::test]
    async fn requests_split_across_frames_decode_one_by_one() {
        let a = DiscoveryRequest {
            version_info: "1".into(),
            resource_names: (0..5000).map(|i| format!("cluster-{i}")).collect(),
            ..Default::default()
        };
        let b = DiscoveryRequest {
            response_nonce: "7".into(),
            ..Default::default()
        };
        let mut wire = framed(&a);
        wire.extend(framed(&b));
        // Frames that cut through prefixes and messages alike.
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = wire
            .chunks(1000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let mut stream = MessageStream::<DiscoveryRequest>::new(body);
        assert_eq!(stream.message().await.unwrap(), Some(a));
        assert!(stream.buf.capacity() <= KEEP_BUFFER, "large buffer kept");
        assert_eq!(stream.message().await.unwrap(), Some(b));
        assert_eq!(stream.message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_and_compressed_requests_are_errors() {
        let mut cut = framed(&DiscoveryRequest {
            version_info: "1".into(),
            ..Default::default()
        });
        cut.pop();
        let body = http_body_util::Full::new(Bytes::from(cut));
        let mut stream = MessageStream::<DiscoveryRequest>::new(body);
        assert_eq!(
            stream.message().await.unwrap_err().code(),
            tonic::Code::Internal
        );
        // A header announcing 60 MiB that never comes does not reserve it.
        let mut announced = vec![0];
        announced.extend_from_slice(&(60u32 << 20).to_be_bytes());
        let body = http_body_util::Full::new(Bytes::from(announced));
        let mut stream = MessageStream::<DiscoveryRequest>::new(body);
        assert!(stream.message().await.is_err());
        assert!(
            stream.buf.capacity() <= 2 << 20,
            "{}",
            stream.buf.capacity()
        );
        let body = http_body_util::Full::new(Bytes::from_static(&[1, 0, 0, 0, 0]));
        let mut stream = MessageStream::<DiscoveryRequest>::new(body);
        assert_eq!(
            stream.message().await.unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }

    #[tokio::test]
    async fn responses_are_framed_in_bounded_chunks_then_trailers() {
        // Small resources encoded one by one: each is copied into the chunk
        // being built (a run of neighbours would go out as it is).
        let resources: Vec<_> = (0..2000)
            .map(|i| Resource::from_body(ResourceType::Endpoint, format!("r{i}"), &[1u8; 100]))
            .collect();
        let msg = WireDiscoveryResponse {
            version_info: "v".into(),
            resources: resources.iter().map(|r| r.sotw_entry()).collect(),
            nonce: "1".into(),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(msg.clone())).await.unwrap();
        tx.send(Err(Status::invalid_argument("bad node")))
            .await
            .unwrap();
        let mut body = ResponseBody::new(rx);
        let (mut data, mut largest, mut trailer) = (Vec::new(), 0, None);
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            match frame.into_data() {
                Ok(d) => {
                    largest = largest.max(d.len());
                    data.extend_from_slice(&d);
                }
                Err(f) => trailer = f.into_trailers().ok(),
            }
        }
        assert_eq!(data, frame(msg.encode_to_vec()));
        assert!(largest < CHUNK + 200, "chunk of {largest} bytes");
        let trailer = trailer.expect("trailers");
        assert_eq!(trailer["grpc-status"], "3");
        assert_eq!(trailer["grpc-message"], "bad%20node");
    }
}
