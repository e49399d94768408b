//! Minimal HTTP/1.1 plumbing for the Consul stand-in: read one request, write one response.
//!
//! Hand-rolled on `std::net` instead of tiny_http because the fault modes need
//! control tiny_http does not give: closing every open keep-alive connection
//! when the stand-in "goes down", and holding a request without ever sending
//! a response (tiny_http answers 500 when a request is dropped).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Upper bound for the request line plus headers.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// Upper bound for a request body (Consul's own KV limit is checked later).
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One parsed HTTP request.
pub(crate) struct Request {
    /// Upper-case method as sent.
    pub method: String,
    /// Percent-decoded path, without the query.
    pub path: String,
    /// Percent-decoded query pairs in order (`?recurse` gives `("recurse", "")`).
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies are reassembled).
    pub body: Vec<u8>,
    /// Whether the client lets us keep the connection open afterwards.
    pub keep_alive: bool,
}

impl Request {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a query parameter is present at all (`?recurse`).
    pub fn has_param(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
}

/// Why no request could be read from a connection.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    /// The bytes were not an HTTP/1.x request; answer 400 and close.
    Malformed(&'static str),
    /// Head or body over the limits; answer 413/431 and close.
    TooLarge,
    /// Socket error (reset, shut down by a fault); just close. The details
    /// do not matter: the connection is gone either way.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

/// Reads one line (without CRLF) while charging it against `budget`.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    budget: &mut u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    if n == 0 {
        return if *budget == 0 {
            Err(ReadError::TooLarge)
        } else {
            Ok(None)
        };
    }
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        return if *budget == 0 {
            Err(ReadError::TooLarge)
        } else {
            Err(ReadError::Malformed(
                "connection closed inside the request head",
            ))
        };
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Reads the next request from a keep-alive connection.
///
/// Sends `100 Continue` itself when the client asks for it.
pub(crate) fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    // Skip stray empty lines between requests (RFC 9112 §2.2).
    let request_line = loop {
        match read_line(reader, &mut budget)? {
            None => return Err(ReadError::Closed),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let request_line = String::from_utf8(request_line)
        .map_err(|_| ReadError::Malformed("request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("unsupported HTTP version")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ReadError::Malformed("bad method"));
    }

    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(ReadError::Malformed(
                "connection closed inside the request head",
            ));
        };
        if line.is_empty() {
            break;
        }
        let line =
            String::from_utf8(line).map_err(|_| ReadError::Malformed("header is not UTF-8"))?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("header without colon"));
        };
        if name.is_empty() || name.starts_with([' ', '\t']) || name.ends_with([' ', '\t']) {
            return Err(ReadError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    let (path, query) = split_target(target)?;
    let mut request = Request {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let connection = request
        .header("connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    request.keep_alive = if http10 {
        connection.split(',').any(|t| t.trim() == "keep-alive")
    } else {
        !connection.split(',').any(|t| t.trim() == "close")
    };

    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match request.header("content-length") {
        Some(v) if !chunked => Some(
            v.parse::<usize>()
                .map_err(|_| ReadError::Malformed("bad Content-Length"))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ReadError::TooLarge);
    }
    let expects_body = chunked || length.is_some_and(|n| n > 0);
    if expects_body
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        let stream = reader.get_mut();
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        stream.flush()?;
    }
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(request)
}

/// Reassembles a `Transfer-Encoding: chunked` body.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(ReadError::Malformed(
                "connection closed inside a chunked body",
            ));
        };
        let line = String::from_utf8(line).map_err(|_| ReadError::Malformed("bad chunk size"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                match read_line(reader, &mut budget)? {
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => continue,
                    None => {
                        return Err(ReadError::Malformed(
                            "connection closed inside chunk trailers",
                        ));
                    }
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(ReadError::Malformed("chunk not followed by CRLF"));
        }
    }
}

/// Splits a request target into a decoded path and decoded query pairs.
fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), ReadError> {
    // Absolute form (`http://host/path`) is legal in requests; keep the path.
    let origin = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        target
    };
    if !origin.starts_with('/') {
        return Err(ReadError::Malformed("request target must start with '/'"));
    }
    let (raw_path, raw_query) = origin.split_once('?').unwrap_or((origin, ""));
    let path = percent_decode(raw_path, false)
        .ok_or(ReadError::Malformed("bad percent-encoding in path"))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k =
            percent_decode(k, true).ok_or(ReadError::Malformed("bad percent-encoding in query"))?;
        let v =
            percent_decode(v, true).ok_or(ReadError::Malformed("bad percent-encoding in query"))?;
        query.push((k, v));
    }
    Ok((path, query))
}

/// Decodes `%XX` escapes (and `+` as space in queries, like Go's `ParseQuery`).
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One response to write.
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added when writing).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Response {
        // Serialising plain data structures cannot fail; fall back to a 500 anyway.
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            },
            Err(err) => Response::text(500, format!("stand-in could not encode JSON: {err}")),
        }
    }

    /// A plain-text response, as Consul sends its errors.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A response without a body (Consul's KV 404).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Reason phrase for the status line.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a response in one go.
pub(crate) fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + response.body.len());
    write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    )?;
    for (name, value) in &response.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(out, "Content-Length: {}\r\n", response.body.len())?;
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_decodes_targets() {
        let (path, query) =
            split_target("/v1/kv/a%2Fb?recurse&separator=%2F&x=a+b").expect("valid target");
        assert_eq!(path, "/v1/kv/a/b");
        assert_eq!(
            query,
            vec![
                ("recurse".to_string(), String::new()),
                ("separator".to_string(), "/".to_string()),
                ("x".to_string(), "a b".to_string())
            ]
        );
        assert!(split_target("v1/kv").is_err());
        assert!(split_target("/v1/kv/%zz").is_err());
    }
}
