//! JSON encoding byte-identical to Go's `encoding/json.Marshal` (Go 1.22 and later) for the
//! registry types: compact, and `<`, `>`, `&`, U+2028 and U+2029 written as `\u003c`-style
//! escapes. serde_json already escapes control characters the way Go does.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// Encodes `value` as Go's `json.Marshal` would. Fails only for values JSON cannot represent
/// (a map with non-string keys); never for the registry types.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(256);
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut bytes, GoFormatter))?;
    Ok(bytes)
}

/// Encodes `value` as Go's `json.Marshal` would, as a string.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    // serde_json writes UTF-8 only (every escape is ASCII), so this never replaces anything.
    Ok(String::from_utf8_lossy(&to_vec(value)?).into_owned())
}

/// serde_json's compact output plus Go's HTML-safe escapes.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (index, character) in fragment.char_indices() {
            let escape = match character {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + character.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
    // Every other method keeps the trait's default: serde_json's compact output, as Go's.
}
