//! Reading XML-RPC documents (responses from the hub, task requests, and — in the
//! fake hub — method calls). Accepts what Python's `xmlrpc.client` parser accepts
//! for the types Koji uses: `i1/i2/i4/int/i8/biginteger`, `double/float/bigdecimal`,
//! untyped `<value>` strings, `<nil/>` (also namespaced like `ex:nil`), base64,
//! `dateTime.iso8601`. Like defusedxml it refuses DTDs and unknown entities, and it
//! limits nesting depth so hostile input cannot exhaust the stack.

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::fault::Fault;
use super::value::{Struct, Value};

/// Deepest nesting of arrays/structs accepted.
pub const MAX_DEPTH: usize = 128;

/// Why a document could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Malformed XML (as reported by the XML reader), with the byte position.
    #[error("malformed XML at byte {pos}: {msg}")]
    Xml {
        /// Byte offset in the document.
        pos: u64,
        /// What the XML reader reported.
        msg: String,
    },
    /// Well-formed XML that is not valid XML-RPC.
    #[error("invalid XML-RPC at byte {pos}: {msg}")]
    Rpc {
        /// Byte offset in the document.
        pos: u64,
        /// What was wrong.
        msg: String,
    },
}

/// A decoded `methodResponse`.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodResponse {
    /// `<params>`: usually exactly one value.
    Params(Vec<Value>),
    /// `<fault>`.
    Fault(Fault),
}

impl MethodResponse {
    /// The result as the Python client returns it: a fault is an error; a single param
    /// is the value; several params are an array (`u.close()` returns a tuple).
    pub fn into_result(self) -> Result<Value, Fault> {
        match self {
            MethodResponse::Fault(f) => Err(f),
            MethodResponse::Params(mut p) => {
                if p.len() == 1 {
                    Ok(p.pop().unwrap_or_default())
                } else {
                    Ok(Value::Array(p))
                }
            }
        }
    }
}

/// A decoded `methodCall`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// `methodName`.
    pub method: String,
    /// The positional params (kwargs still encoded, see [`super::decode_args`]).
    pub params: Vec<Value>,
}

/// Decode a `methodResponse` document.
pub fn decode_response(doc: &[u8]) -> Result<MethodResponse, DecodeError> {
    let mut p = Parser::new(doc);
    p.expect_start("methodResponse")?;
    let resp = match p.next_tag()? {
        Tag::Start(n) if n == "params" => MethodResponse::Params(p.params_body()?),
        Tag::Empty(n) if n == "params" => MethodResponse::Params(Vec::new()),
        Tag::Start(n) if n == "fault" => {
            p.expect_start("value")?;
            let v = p.value_body(0)?;
            p.expect_end("fault")?;
            let fault = Fault::from_value(&v).ok_or_else(|| {
                p.rpc_err(format!(
                    "fault is not a {{faultCode, faultString}} struct: {v}"
                ))
            })?;
            MethodResponse::Fault(fault)
        }
        other => return Err(p.rpc_err(format!("expected <params> or <fault>, found {other}"))),
    };
    p.expect_end("methodResponse")?;
    p.expect_eof()?;
    Ok(resp)
}

/// Decode a `methodCall` document (task requests stored by the hub are these).
pub fn decode_call(doc: &[u8]) -> Result<MethodCall, DecodeError> {
    let mut p = Parser::new(doc);
    p.expect_start("methodCall")?;
    p.expect_start("methodName")?;
    let method = p.text_until_end("methodName")?;
    let params = match p.next_tag()? {
        Tag::Start(n) if n == "params" => {
            let params = p.params_body()?;
            p.expect_end("methodCall")?;
            params
        }
        Tag::Empty(n) if n == "params" => {
            p.expect_end("methodCall")?;
            Vec::new()
        }
        Tag::End(n) if n == "methodCall" => Vec::new(),
        other => return Err(p.rpc_err(format!("expected <params>, found {other}"))),
    };
    p.expect_eof()?;
    Ok(MethodCall {
        method: method.trim().to_owned(),
        params,
    })
}

/// Decode a single `<value>` element (used by tests and by the fake hub).
pub fn decode_value(doc: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Parser::new(doc);
    let v = match p.next_tag()? {
        Tag::Start(n) if n == "value" => p.value_body(0)?,
        Tag::Empty(n) if n == "value" => Value::String(String::new()),
        other => return Err(p.rpc_err(format!("expected <value>, found {other}"))),
    };
    p.expect_eof()?;
    Ok(v)
}

/// A structural event, with namespace prefixes stripped.
#[derive(Debug)]
enum Tag {
    Start(String),
    Empty(String),
    End(String),
    Eof,
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::Start(n) => write!(f, "<{n}>"),
            Tag::Empty(n) => write!(f, "<{n}/>"),
            Tag::End(n) => write!(f, "</{n}>"),
            Tag::Eof => f.write_str("end of document"),
        }
    }
}

/// Text content or a tag, as seen inside `<value>`.
enum Item {
    Text(String),
    Tag(Tag),
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

fn local(name: &[u8]) -> String {
    let name = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(name).into_owned()
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn new(doc: &'a [u8]) -> Self {
        let doc = doc.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(doc);
        let mut reader = Reader::from_reader(doc);
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        Parser { reader }
    }

    fn pos(&self) -> u64 {
        self.reader.buffer_position()
    }

    fn rpc_err(&self, msg: impl Into<String>) -> DecodeError {
        DecodeError::Rpc {
            pos: self.pos(),
            msg: msg.into(),
        }
    }

    fn xml_err(&self, msg: impl std::fmt::Display) -> DecodeError {
        DecodeError::Xml {
            pos: self.pos(),
            msg: msg.to_string(),
        }
    }

    /// The next text chunk or tag; comments, PIs and the declaration are skipped.
    fn next_item(&mut self) -> Result<Item, DecodeError> {
        loop {
            let ev = self.reader.read_event().map_err(|e| self.xml_err(e))?;
            return Ok(match ev {
                Event::Start(e) => Item::Tag(Tag::Start(local(e.name().as_ref()))),
                Event::Empty(e) => Item::Tag(Tag::Empty(local(e.name().as_ref()))),
                Event::End(e) => Item::Tag(Tag::End(local(e.name().as_ref()))),
                Event::Eof => Item::Tag(Tag::Eof),
                Event::Text(t) => {
                    Item::Text(t.xml10_content().map_err(|e| self.xml_err(e))?.into_owned())
                }
                Event::CData(t) => {
                    Item::Text(t.xml10_content().map_err(|e| self.xml_err(e))?.into_owned())
                }
                Event::GeneralRef(r) => {
                    let c = if r.is_char_ref() {
                        r.resolve_char_ref().map_err(|e| self.xml_err(e))?
                    } else {
                        let name = r.decode().map_err(|e| self.xml_err(e))?;
                        predefined_entity(&name)
                    };
                    match c {
                        Some(c) => Item::Text(c.to_string()),
                        None => return Err(self.xml_err("undefined entity reference")),
                    }
                }
                Event::DocType(_) => return Err(self.xml_err("DTDs are not allowed")),
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => continue,
            });
        }
    }

    /// The next tag, skipping whitespace between elements.
    fn next_tag(&mut self) -> Result<Tag, DecodeError> {
        loop {
            match self.next_item()? {
                Item::Tag(t) => return Ok(t),
                Item::Text(t) if t.trim().is_empty() => continue,
                Item::Text(t) => return Err(self.rpc_err(format!("unexpected text {t:?}"))),
            }
        }
    }

    fn expect_start(&mut self, name: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tag::Start(n) if n == name => Ok(()),
            other => Err(self.rpc_err(format!("expected <{name}>, found {other}"))),
        }
    }

    fn expect_end(&mut self, name: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tag::End(n) if n == name => Ok(()),
            other => Err(self.rpc_err(format!("expected </{name}>, found {other}"))),
        }
    }

    fn expect_eof(&mut self) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tag::Eof => Ok(()),
            other => Err(self.rpc_err(format!("trailing content after the document: {other}"))),
        }
    }

    /// Text up to `</name>`; any element inside is an error.
    fn text_until_end(&mut self, name: &str) -> Result<String, DecodeError> {
        let mut s = String::new();
        loop {
            match self.next_item()? {
                Item::Text(t) => s.push_str(&t),
                Item::Tag(Tag::End(n)) if n == name => return Ok(s),
                Item::Tag(other) => {
                    return Err(self.rpc_err(format!("unexpected {other} inside <{name}>")))
                }
            }
        }
    }

    /// After `<params>`: `<param><value>…</value></param>`* `</params>`.
    fn params_body(&mut self) -> Result<Vec<Value>, DecodeError> {
        let mut out = Vec::new();
        loop {
            match self.next_tag()? {
                Tag::Start(n) if n == "param" => {
                    let v = match self.next_tag()? {
                        Tag::Start(n) if n == "value" => self.value_body(0)?,
                        Tag::Empty(n) if n == "value" => Value::String(String::new()),
                        other => {
                            return Err(self.rpc_err(format!("expected <value>, found {other}")))
                        }
                    };
                    self.expect_end("param")?;
                    out.push(v);
                }
                Tag::End(n) if n == "params" => return Ok(out),
                other => return Err(self.rpc_err(format!("expected <param>, found {other}"))),
            }
        }
    }

    /// After `<value>`: an untyped string, or one typed element, then `</value>`.
    fn value_body(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.rpc_err(format!("values nested deeper than {MAX_DEPTH}")));
        }
        let mut text = String::new();
        loop {
            match self.next_item()? {
                Item::Text(t) => text.push_str(&t),
                Item::Tag(Tag::End(n)) if n == "value" => return Ok(Value::String(text)),
                Item::Tag(Tag::Start(tag)) => {
                    if !text.trim().is_empty() {
                        return Err(self.rpc_err(format!("text {text:?} before <{tag}>")));
                    }
                    let v = self.typed_body(&tag, depth)?;
                    self.expect_end("value")?;
                    return Ok(v);
                }
                Item::Tag(Tag::Empty(tag)) => {
                    if !text.trim().is_empty() {
                        return Err(self.rpc_err(format!("text {text:?} before <{tag}/>")));
                    }
                    let v = match tag.as_str() {
                        "nil" => Value::Nil,
                        "string" => Value::String(String::new()),
                        "base64" => Value::Base64(Vec::new()),
                        "array" => Value::Array(Vec::new()),
                        "struct" => Value::Struct(Struct::new()),
                        other => return Err(self.rpc_err(format!("empty <{other}/> has no value"))),
                    };
                    self.expect_end("value")?;
                    return Ok(v);
                }
                Item::Tag(other) => {
                    return Err(self.rpc_err(format!("unexpected {other} inside <value>")))
                }
            }
        }
    }

    fn typed_body(&mut self, tag: &str, depth: usize) -> Result<Value, DecodeError> {
        Ok(match tag {
            "i1" | "i2" | "i4" | "i8" | "int" | "biginteger" => {
                let t = self.text_until_end(tag)?;
                let t = t.trim();
                let v = t
                    .parse::<i64>()
                    .map_err(|_| self.rpc_err(format!("bad <{tag}> value {t:?}")))?;
                Value::Int(v)
            }
            "boolean" => {
                let t = self.text_until_end(tag)?;
                match t.trim() {
                    "0" => Value::Bool(false),
                    "1" => Value::Bool(true),
                    other => return Err(self.rpc_err(format!("bad boolean value {other:?}"))),
                }
            }
            "double" | "float" | "bigdecimal" => {
                let t = self.text_until_end(tag)?;
                let t = t.trim();
                let v = t
                    .parse::<f64>()
                    .map_err(|_| self.rpc_err(format!("bad <{tag}> value {t:?}")))?;
                Value::Double(v)
            }
            "string" => Value::String(self.text_until_end(tag)?),
            "base64" => {
                let t = self.text_until_end(tag)?;
                let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| self.rpc_err(format!("bad base64: {e}")))?;
                Value::Base64(bytes)
            }
            "dateTime.iso8601" => Value::DateTime(self.text_until_end(tag)?.trim().to_owned()),
            "nil" => {
                let t = self.text_until_end(tag)?;
                if !t.trim().is_empty() {
                    return Err(self.rpc_err("text inside <nil>"));
                }
                Value::Nil
            }
            "array" => {
                let mut items = Vec::new();
                match self.next_tag()? {
                    Tag::Empty(n) if n == "data" => {}
                    Tag::Start(n) if n == "data" => loop {
                        match self.next_tag()? {
                            Tag::Start(n) if n == "value" => {
                                items.push(self.value_body(depth + 1)?)
                            }
                            Tag::Empty(n) if n == "value" => {
                                items.push(Value::String(String::new()))
                            }
                            Tag::End(n) if n == "data" => break,
                            other => {
                                return Err(self
                                    .rpc_err(format!("expected <value> in <data>, found {other}")))
                            }
                        }
                    },
                    other => return Err(self.rpc_err(format!("expected <data>, found {other}"))),
                }
                self.expect_end("array")?;
                Value::Array(items)
            }
            "struct" => {
                let mut s = Struct::new();
                loop {
                    match self.next_tag()? {
                        Tag::Start(n) if n == "member" => {
                            self.expect_start("name")?;
                            let name = self.text_until_end("name")?;
                            let v = match self.next_tag()? {
                                Tag::Start(n) if n == "value" => self.value_body(depth + 1)?,
                                Tag::Empty(n) if n == "value" => Value::String(String::new()),
                                other => {
                                    return Err(self.rpc_err(format!(
                                        "expected <value> in <member>, found {other}"
                                    )))
                                }
                            };
                            self.expect_end("member")?;
                            s.insert(name, v);
                        }
                        Tag::End(n) if n == "struct" => break,
                        other => {
                            return Err(self.rpc_err(format!("expected <member>, found {other}")))
                        }
                    }
                }
                Value::Struct(s)
            }
            other => return Err(self.rpc_err(format!("unknown value type <{other}>"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmlrpc::encode::{encode_call, encode_fault_response, encode_response};

    #[test]
    fn untyped_and_namespaced_values() {
        let doc = b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>\
            <value>plain &amp; text</value><value><ex:nil xmlns:ex='x'/></value><value><i4> 7 </i4></value>\
            <value><i8>9223372036854775807</i8></value><value/><value><string/></value>\
            <value><boolean>1</boolean></value><value><double>-1.5e3</double></value>\
            <value><dateTime.iso8601>20250702T16:29:15</dateTime.iso8601></value>\
            <value><base64>aGVs\nbG8=</base64></value><value><string>&#x41;&#66;<![CDATA[<c>]]></string></value>\
            </data></array></value></param></params></methodResponse>";
        let v = decode_response(doc).unwrap().into_result().unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::from("plain & text"),
                Value::Nil,
                Value::Int(7),
                Value::Int(i64::MAX),
                Value::from(""),
                Value::from(""),
                Value::Bool(true),
                Value::Double(-1500.0),
                Value::DateTime("20250702T16:29:15".into()),
                Value::Base64(b"hello".to_vec()),
                Value::from("AB<c>"),
            ])
        );
    }

    #[test]
    fn faults_and_calls() {
        let f = Fault::new(1007, "session expired");
        assert_eq!(
            decode_response(encode_fault_response(&f).as_bytes()).unwrap(),
            MethodResponse::Fault(f)
        );
        let call = decode_call(encode_call("host.getID", &[]).as_bytes()).unwrap();
        assert_eq!(call.method, "host.getID");
        assert!(call.params.is_empty());
        let call = decode_call(b"<methodCall><methodName>echo</methodName></methodCall>").unwrap();
        assert_eq!(call.method, "echo");
        let r = decode_response(encode_response(&Value::from("x\r\ny")).as_bytes()).unwrap();
        assert_eq!(r.into_result().unwrap(), Value::from("x\r\ny"));
    }

    #[test]
    fn hostile_and_malformed_documents_are_refused() {
        let bad: &[&[u8]] = &[
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse><params><param><value>&a;</value></param></params></methodResponse>",
            b"<methodResponse><params><param><value>&foo;</value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><bogus>1</bogus></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><int>1</int></value></param></params>",
            b"<methodResponse><params></params></methodResponse><extra/>",
            b"<methodResponse><fault><value><int>1</int></value></fault></methodResponse>",
            b"<methodResponse><params><param><value><int>1</i4></value></param></params></methodResponse>",
            b"",
            b"\xff\xfe",
        ];
        for doc in bad {
            assert!(
                decode_response(doc).is_err(),
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
        let mut deep = String::from("<methodResponse><params><param><value>");
        for _ in 0..1000 {
            deep.push_str("<array><data><value>");
        }
        assert!(matches!(
            decode_response(deep.as_bytes()),
            Err(DecodeError::Rpc { .. }) | Err(DecodeError::Xml { .. })
        ));
    }
}
