//! A `tokio_util::codec` adapter, so native shells can wrap a socket in
//! `Framed` and get [`Packet`]s. Enabled by the `tokio-codec` feature.

use bytes::BytesMut;
use thiserror::Error;

use crate::decode::{decode_from, DecodeError};
use crate::encode::EncodeError;
use crate::packet::Packet;

/// Encodes and decodes [`Packet`]s on a byte stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct PacketCodec;

/// What can go wrong on a framed stream.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The peer sent bytes that are not a packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl tokio_util::codec::Decoder for PacketCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        Ok(decode_from(src)?)
    }
}

impl tokio_util::codec::Encoder<Packet> for PacketCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.reserve(item.encoded_len());
        Ok(item.encode(dst)?)
    }
}
