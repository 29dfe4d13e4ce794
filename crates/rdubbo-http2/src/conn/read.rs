//! Reading: the connection preface, frames parsed in batches and applied to the stream
//! table, connection errors.

use super::*;

/// A connection-level error: GOAWAY with this code.
#[derive(Debug)]
pub(crate) struct ConnError {
    pub reason: Reason,
    pub message: String,
}

fn conn_err(reason: Reason, message: impl Into<String>) -> ConnError {
    ConnError {
        reason,
        message: message.into(),
    }
}

/// A stream the peer opened (server side).
pub(crate) struct Opened {
    pub id: u32,
    pub headers: Headers,
}

/// A header block being received over CONTINUATION frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    block: BytesMut,
    frames: u32,
}

/// The reading side of a connection.
pub(crate) struct Reader<R> {
    read: R,
    buf: BytesMut,
    decoder: Decoder,
    pending: Option<Pending>,
    /// Wakers collected during a batch (kept for its allocation).
    wakers: Vec<Waker>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(read: R, config: &Config) -> Reader<R> {
        Reader {
            read,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(config.header_table_size as usize),
            pending: None,
            wakers: Vec::new(),
        }
    }

    /// Reads the client preface (server side).
    pub(crate) async fn preface(&mut self) -> Result<(), ConnError> {
        while self.buf.len() < frame::PREFACE.len() {
            let n = self.read.read_buf(&mut self.buf).await.map_err(|e| {
                conn_err(Reason::PROTOCOL_ERROR, format!("reading the preface: {e}"))
            })?;
            if n == 0 {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "closed before the preface",
                ));
            }
            if !frame::PREFACE.starts_with(&self.buf[..self.buf.len().min(24)]) {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "not the HTTP/2 connection preface (prior knowledge expected)",
                ));
            }
        }
        let _ = self.buf.split_to(frame::PREFACE.len());
        Ok(())
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    pub(crate) async fn fill(&mut self, max_frame: u32) -> std::io::Result<bool> {
        // Room for at least one whole frame of the size we accept.
        let want = (HEADER_LEN + max_frame as usize).min(64 * 1024);
        if self.buf.capacity() - self.buf.len() < want / 4 {
            self.buf.reserve(want);
        }
        Ok(self.read.read_buf(&mut self.buf).await? > 0)
    }

    /// Whether a whole frame (or a frame header over `max_frame`) is buffered.
    pub(crate) fn has_frame(&self, max_frame: u32) -> bool {
        FrameHeader::parse(&self.buf)
            .is_some_and(|h| h.len > max_frame || self.buf.len() >= HEADER_LEN + h.len as usize)
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Parses and applies every complete frame buffered; streams the peer opened are
    /// appended to `opened`. Wakes the streams concerned at the end.
    pub(crate) fn process(
        &mut self,
        shared: &Shared,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let mut st = shared.state();
        let now = Instant::now();
        if now.duration_since(st.budget.since) >= Duration::from_secs(1) {
            st.budget = Budget {
                since: now,
                control: 0,
                resets: 0,
            };
        }
        let mut result = Ok(());
        while let Some(h) = FrameHeader::parse(&self.buf) {
            if h.len > shared.config.max_frame_size {
                result = Err(conn_err(
                    Reason::FRAME_SIZE_ERROR,
                    format!(
                        "frame of {} bytes over SETTINGS_MAX_FRAME_SIZE {}",
                        h.len, shared.config.max_frame_size
                    ),
                ));
                break;
            }
            let total = HEADER_LEN + h.len as usize;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                break;
            }
            let mut bytes = self.buf.split_to(total).freeze();
            let payload = bytes.split_off(HEADER_LEN);
            let frame = match Frame::parse(h, payload) {
                Ok(f) => f,
                Err(e) => {
                    result = Err(conn_err(e.reason, e.message));
                    break;
                }
            };
            if let Err(e) = self.apply(&mut st, shared, frame, opened) {
                result = Err(e);
                break;
            }
        }
        let wakers_needed = !self.wakers.is_empty();
        drop(st);
        if wakers_needed {
            self.wakers.drain(..).for_each(Waker::wake);
        }
        result
    }

    fn control(st: &mut State, config: &Config) -> Result<(), ConnError> {
        st.budget.control += 1;
        if st.budget.control > config.max_control_frames_per_sec {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                format!(
                    "more than {} control frames (SETTINGS, PING, PRIORITY, empty or unknown frames) in a second",
                    config.max_control_frames_per_sec
                ),
            ));
        }
        Ok(())
    }

    fn reset_budget(st: &mut State, config: &Config) -> Result<(), ConnError> {
        st.budget.resets += 1;
        if st.budget.resets > config.max_resets_per_sec {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                format!(
                    "more than {} streams reset or refused in a second (rapid reset)",
                    config.max_resets_per_sec
                ),
            ));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        st: &mut State,
        shared: &Shared,
        frame: Frame,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let config = &shared.config;
        if let Some(p) = &mut self.pending {
            let Frame::Continuation {
                stream,
                block,
                end_headers,
            } = frame
            else {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "expected CONTINUATION of a header block",
                ));
            };
            if stream != p.stream {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION on another stream",
                ));
            }
            p.frames += 1;
            if p.frames > config.max_continuation_frames
                || p.block.len() + block.len() > config.max_header_list_size as usize + 1024
            {
                return Err(conn_err(
                    Reason::ENHANCE_YOUR_CALM,
                    format!(
                        "header block over {} CONTINUATION frames or {} bytes",
                        config.max_continuation_frames,
                        config.max_header_list_size as usize + 1024
                    ),
                ));
            }
            p.block.extend_from_slice(&block);
            if end_headers {
                let Some(p) = self.pending.take() else {
                    return Ok(());
                };
                return self.headers(st, shared, p.stream, p.block.freeze(), p.end_stream, opened);
            }
            return Ok(());
        }
        match frame {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => {
                if i64::from(flow_len) > st.recv_window {
                    return Err(conn_err(
                        Reason::FLOW_CONTROL_ERROR,
                        "DATA beyond the connection window",
                    ));
                }
                st.recv_window -= i64::from(flow_len);
                if data.is_empty() && !end_stream {
                    Self::control(st, config)?;
                }
                let padding = flow_len - data.len() as u32;
                let Some(s) = st
                    .streams
                    .get_mut(&stream)
                    .filter(|s| !s.recv_end && s.error.is_none())
                else {
                    if self.idle(st, shared, stream) {
                        return Err(conn_err(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
                    }
                    // A stream closed or reset: its data only gives the window back.
                    st.release_conn(flow_len);
                    st.conn_update();
                    return Ok(());
                };
                s.recv_window -= i64::from(flow_len);
                if s.recv_window < 0 {
                    st.release_conn(flow_len);
                    st.reset_local(stream, Reason::FLOW_CONTROL_ERROR, &mut self.wakers);
                    return Ok(());
                }
                if !data.is_empty() {
                    s.recv.push_back(data);
                }
                if end_stream {
                    s.recv_end = true;
                }
                s.wake(&mut self.wakers);
                if padding > 0 {
                    st.release_conn(padding);
                }
                if end_stream {
                    st.settle(stream, &mut self.wakers);
                }
                st.conn_update();
            }
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
            } => {
                if block.is_empty() && !end_headers {
                    Self::control(st, config)?;
                }
                if !end_headers {
                    if block.len() > config.max_header_list_size as usize + 1024 {
                        return Err(conn_err(
                            Reason::ENHANCE_YOUR_CALM,
                            "header block too large",
                        ));
                    }
                    self.pending = Some(Pending {
                        stream,
                        end_stream,
                        block: BytesMut::from(&block[..]),
                        frames: 0,
                    });
                    return Ok(());
                }
                return self.headers(st, shared, stream, block, end_stream, opened);
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Self::control(st, config)?,
            Frame::RstStream { stream, reason } => {
                if self.idle(st, shared, stream) {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "RST_STREAM on an idle stream",
                    ));
                }
                if let Some(s) = st.streams.get_mut(&stream) {
                    if s.active && !shared.is_client {
                        Self::reset_budget(st, config)?;
                    }
                    let Some(s) = st.streams.get_mut(&stream) else {
                        return Ok(());
                    };
                    if shared.is_client && reason == Reason::NO_ERROR && s.recv_end {
                        // A server that sent its whole response may stop the request this
                        // way (RFC 9113 §8.1; gRPC servers do when the response ends first):
                        // the response stands, only sending ends.
                        s.send_end = true;
                    } else if s.error.is_none() {
                        s.error = Some(Error::Reset {
                            reason,
                            remote: true,
                        });
                    }
                    s.wake(&mut self.wakers);
                    st.settle(stream, &mut self.wakers);
                }
            }
            Frame::Settings { ack, params } => {
                if ack {
                    return Ok(());
                }
                Self::control(st, config)?;
                for (id, value) in frame::settings_iter(&params) {
                    match id {
                        setting::HEADER_TABLE_SIZE => st.encoder.set_max_table_size(value as usize),
                        setting::ENABLE_PUSH if value > 1 => {
                            return Err(conn_err(Reason::PROTOCOL_ERROR, "ENABLE_PUSH above 1"))
                        }
                        setting::MAX_CONCURRENT_STREAMS => {
                            st.peer.max_concurrent = value;
                            self.wakers.append(&mut st.waiters);
                        }
                        setting::INITIAL_WINDOW_SIZE => {
                            if i64::from(value) > MAX_WINDOW {
                                return Err(conn_err(
                                    Reason::FLOW_CONTROL_ERROR,
                                    "INITIAL_WINDOW_SIZE above 2^31-1",
                                ));
                            }
                            let delta = i64::from(value) - i64::from(st.peer.initial_window);
                            st.peer.initial_window = value;
                            for s in st.streams.values_mut() {
                                s.send_window += delta;
                                if s.send_window > MAX_WINDOW {
                                    return Err(conn_err(
                                        Reason::FLOW_CONTROL_ERROR,
                                        "a stream window above 2^31-1",
                                    ));
                                }
                                if delta > 0 {
                                    if let Some(w) = s.send_waker.take() {
                                        self.wakers.push(w);
                                    }
                                }
                            }
                        }
                        setting::MAX_FRAME_SIZE => {
                            if !(frame::DEFAULT_MAX_FRAME..=(1 << 24) - 1).contains(&value) {
                                return Err(conn_err(
                                    Reason::PROTOCOL_ERROR,
                                    "MAX_FRAME_SIZE out of range",
                                ));
                            }
                            st.peer.max_frame_size = value;
                        }
                        setting::MAX_HEADER_LIST_SIZE => st.peer.max_header_list = value,
                        _ => {}
                    }
                }
                frame::put_settings_ack(&mut st.wbuf);
            }
            Frame::PushPromise { .. } => {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "PUSH_PROMISE while push is disabled",
                ))
            }
            Frame::Ping { ack, payload } => {
                if !ack {
                    Self::control(st, config)?;
                    frame::put_ping(&mut st.wbuf, true, payload);
                }
            }
            Frame::GoAway {
                last_stream,
                reason,
                debug,
            } => {
                st.goaway_recv = Some(last_stream);
                let message = String::from_utf8_lossy(&debug).into_owned();
                if reason != Reason::NO_ERROR {
                    tracing::debug!(%reason, %message, "GOAWAY received");
                }
                let refused: Vec<u32> = st
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| shared.is_client && id > last_stream)
                    .collect();
                for id in refused {
                    if let Some(s) = st.streams.get_mut(&id) {
                        if s.error.is_none() {
                            s.error = Some(Error::Reset {
                                reason: Reason::REFUSED_STREAM,
                                remote: true,
                            });
                        }
                        s.wake(&mut self.wakers);
                    }
                    st.settle(id, &mut self.wakers);
                }
                if reason != Reason::NO_ERROR {
                    let error = Error::GoAway {
                        reason,
                        remote: true,
                        message,
                    };
                    st.fail(error, &mut self.wakers);
                }
                self.wakers.append(&mut st.waiters);
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream == 0 {
                    if increment == 0 {
                        return Err(conn_err(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
                    }
                    st.send_window += i64::from(increment);
                    if st.send_window > MAX_WINDOW {
                        return Err(conn_err(
                            Reason::FLOW_CONTROL_ERROR,
                            "connection window above 2^31-1",
                        ));
                    }
                    for s in st.streams.values_mut() {
                        if let Some(w) = s.send_waker.take() {
                            self.wakers.push(w);
                        }
                    }
                } else if let Some(s) = st.streams.get_mut(&stream) {
                    if increment == 0 {
                        st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                        return Ok(());
                    }
                    s.send_window += i64::from(increment);
                    if s.send_window > MAX_WINDOW {
                        st.reset_local(stream, Reason::FLOW_CONTROL_ERROR, &mut self.wakers);
                        return Ok(());
                    }
                    if let Some(w) = s.send_waker.take() {
                        self.wakers.push(w);
                    }
                } else if self.idle(st, shared, stream) {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
            Frame::Continuation { .. } => {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION without HEADERS",
                ))
            }
        }
        Ok(())
    }

    /// Whether `stream` was never opened (a peer referring to it errs).
    fn idle(&self, st: &State, shared: &Shared, stream: u32) -> bool {
        if shared.is_client {
            stream % 2 == 1 && stream >= st.next_id
        } else {
            stream % 2 == 1 && stream > st.last_peer_id
        }
    }

    fn headers(
        &mut self,
        st: &mut State,
        shared: &Shared,
        stream: u32,
        block: Bytes,
        end_stream: bool,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let config = &shared.config;
        // Room for the usual lists at once (a field takes at least one byte of the block):
        // no regrowth while decoding.
        let mut headers = Headers::with_capacity(block.len().clamp(1, 16));
        let fits = self
            .decoder
            .decode(&block, config.max_header_list_size as usize, &mut headers)
            .map_err(|e| conn_err(Reason::COMPRESSION_ERROR, e.to_string()))?;
        if let Some(s) = st.streams.get_mut(&stream) {
            // Response headers (client), or trailers (either side).
            if s.recv_end || s.error.is_some() {
                if s.error.is_none() {
                    st.reset_local(stream, Reason::STREAM_CLOSED, &mut self.wakers);
                }
                return Ok(());
            }
            if !fits {
                s.error = Some(Error::User(format!(
                    "the peer's header list is over {} bytes",
                    config.max_header_list_size
                )));
                st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                return Ok(());
            }
            let informational = shared.is_client
                && !s.headers_received
                && headers
                    .get(":status")
                    .is_some_and(|v| v.first() == Some(&b'1'));
            if informational {
                return Ok(());
            }
            let first = shared.is_client && !s.headers_received;
            let trailers_without_end = !first && !end_stream;
            if trailers_without_end {
                st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                return Ok(());
            }
            if first {
                s.headers_received = true;
                s.headers = Some(headers);
            } else {
                s.trailers = Some(headers);
            }
            if end_stream {
                s.recv_end = true;
            }
            s.wake(&mut self.wakers);
            if end_stream {
                st.settle(stream, &mut self.wakers);
            }
            return Ok(());
        }
        if shared.is_client {
            // A stream we reset or dropped: nothing to do (the block was decoded).
            return Ok(());
        }
        if stream % 2 == 0 {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "client opened an even stream",
            ));
        }
        if stream <= st.last_peer_id {
            // A closed stream.
            frame::put_rst(&mut st.wbuf, stream, Reason::STREAM_CLOSED);
            return Ok(());
        }
        st.last_peer_id = stream;
        if st.goaway_sent {
            frame::put_rst(&mut st.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if st.active >= config.max_concurrent_streams as usize
            || st.streams.len() >= 2 * config.max_concurrent_streams as usize
        {
            Self::reset_budget(st, config)?;
            frame::put_rst(&mut st.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if !fits {
            let mut answer = Headers::new();
            answer.push_static(":status", "431");
            st.queue_headers(stream, &answer, true);
            if !end_stream {
                frame::put_rst(&mut st.wbuf, stream, Reason::NO_ERROR);
            }
            return Ok(());
        }
        if let Some(why) = malformed_request(&headers) {
            tracing::debug!(stream, why, "malformed request");
            Self::reset_budget(st, config)?;
            frame::put_rst(&mut st.wbuf, stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        st.insert_stream(stream, config.initial_stream_window, end_stream, false);
        opened.push(Opened {
            id: stream,
            headers,
        });
        Ok(())
    }
}

/// Why a request's header list is malformed (RFC 9113 section 8.2 and 8.3), if it is:
/// upper-case names, pseudo-headers after regular ones or unknown, connection-specific
/// fields, or a request without `:method` or `:path`.
fn malformed_request(headers: &Headers) -> Option<&'static str> {
    let mut regular = false;
    let (mut method, mut path) = (false, false);
    for (name, value) in headers.iter() {
        if name.iter().any(|b| b.is_ascii_uppercase()) {
            return Some("upper-case header name");
        }
        if name.first() == Some(&b':') {
            if regular {
                return Some("pseudo-header after a regular header");
            }
            match name.as_ref() {
                b":method" => method = true,
                b":path" => path = !value.is_empty(),
                b":scheme" | b":authority" | b":protocol" => {}
                _ => return Some("unknown pseudo-header"),
            }
        } else {
            regular = true;
            if matches!(
                name.as_ref(),
                b"connection"
                    | b"keep-alive"
                    | b"proxy-connection"
                    | b"transfer-encoding"
                    | b"upgrade"
            ) || (name.as_ref() == b"te" && value.as_ref() != b"trailers")
            {
                return Some("connection-specific header");
            }
        }
    }
    if !(method && path) {
        return Some("request without :method or :path");
    }
    None
}

/// Ends a connection that failed with `e`: GOAWAY to the peer, every stream failed.
pub(crate) async fn fail_connection(shared: &Shared, e: ConnError) {
    tracing::debug!(reason = %e.reason, message = %e.message, "closing the connection");
    shared.go_away(e.reason, &e.message);
    let error = Error::GoAway {
        reason: e.reason,
        remote: false,
        message: e.message,
    };
    // Best effort: the GOAWAY may not get through a peer that does not read.
    let _ = tokio::time::timeout(Duration::from_secs(1), shared.flush_wait()).await;
    shared.with(|st, wakers| st.fail(error, wakers));
    shared.flush_soon.notify_one();
}

/// The connection ended (the peer closed it or reading failed): fails every stream.
pub(crate) fn lost(shared: &Shared, message: String) {
    shared.with(|st, wakers| st.fail(Error::Io(message), wakers));
    shared.flush_soon.notify_one();
}
