//! How server functions travel: JSON in the body of a `POST`, as `server_fn`'s own `Json`,
//! with one difference that matters to the browser's bundle: bodies are decoded as text
//! (`serde_json::from_str`), never as bytes (`from_slice`).
//!
//! serde_json's deserializer is generic over its reader, so every type the browser decodes
//! is compiled once per reader it is decoded from. A page's data arrives twice: inside the
//! HTML for hydration (decoded from a string by Leptos) and as a server function's answer
//! on client-side navigation (decoded from bytes by `server_fn`'s `Json`). With both, the
//! session page's types (the session, its events, every variant of an event) were in the
//! main module twice; decoding answers as text too leaves one copy. The WebSocket's frames
//! are text already.

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::Serialize;
use serde::de::{DeserializeOwned, Error as _};

/// JSON, decoded from text (see the module's documentation).
pub struct TextJson;

impl ContentType for TextJson {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for TextJson {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for TextJson {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(value).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for TextJson {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(serde_json::Error::custom)?;
        serde_json::from_str(text)
    }
}

/// Arguments and answers of a server function as [`TextJson`] in a `POST`'s body.
pub type Json = Post<TextJson>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_json_text() {
        let bytes = <TextJson as Encodes<Vec<u32>>>::encode(&vec![1, 2, 3]).unwrap();
        assert_eq!(&bytes[..], b"[1,2,3]");
        let back: Vec<u32> = TextJson::decode(bytes).unwrap();
        assert_eq!(back, [1, 2, 3]);
        let bad = <TextJson as Decodes<Vec<u32>>>::decode(Bytes::from_static(b"[1,\xff]"));
        assert!(bad.is_err(), "invalid UTF-8 is refused, not read lossily");
        let bad = <TextJson as Decodes<Vec<u32>>>::decode(Bytes::from_static(b"[1,"));
        assert!(bad.is_err());
    }
}
