//! Where a capture comes from: a file or stdin, decompressed when its first bytes say gzip or
//! zstd, whatever its name.

use std::{
    fs::File,
    io::{self, BufReader, Read},
    path::Path,
};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::{FrameDecoder, StreamingDecoder, errors::FrameDecoderError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Reads from the file or pipe in pieces of this size.
const READ_LEN: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// A capture's bytes, decompressed.
pub struct Input {
    pub compression: Option<Compression>,
    pub reader: Box<dyn Read + Send>,
}

impl Input {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &Path) -> io::Result<Self> {
        if path.as_os_str() == "-" {
            Self::from_reader(Box::new(io::stdin()))
        } else {
            Self::from_reader(Box::new(File::open(path)?))
        }
    }

    /// Looks at the first bytes of `source` for a compression's magic.
    pub fn from_reader(mut source: Box<dyn Read + Send>) -> io::Result<Self> {
        // Until four bytes or the end: a pipe may deliver its first bytes one at a time.
        let mut magic = Vec::with_capacity(ZSTD_MAGIC.len());
        (&mut source)
            .take(ZSTD_MAGIC.len() as u64)
            .read_to_end(&mut magic)?;
        let compression = if magic.starts_with(&GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else if magic.starts_with(&ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else {
            None
        };
        let source = BufReader::with_capacity(READ_LEN, io::Cursor::new(magic).chain(source));
        let reader: Box<dyn Read + Send> = match compression {
            Some(Compression::Gzip) => Box::new(MultiGzDecoder::new(source)),
            Some(Compression::Zstd) => Box::new(ZstdFrames::new(source)),
            None => Box::new(source),
        };
        Ok(Self {
            compression,
            reader,
        })
    }
}

/// Every frame of a zstd stream, as the `zstd` tool reads them: files written by concatenation
/// hold several, and skippable frames (pzstd writes them) are passed over.
struct ZstdFrames<R: Read> {
    /// The frame being decoded; `None` between frames and at the end.
    decoder: Option<StreamingDecoder<Rewound<R>, FrameDecoder>>,
    /// The stream between frames; `None` while a frame is decoded and at the end.
    between: Option<(Rewound<R>, FrameDecoder)>,
}

/// Skippable frames have magics 0x184d2a50 to 0x184d2a5f, then a length.
const SKIPPABLE_MAGIC: u32 = 0x184d_2a50;

impl<R: Read> ZstdFrames<R> {
    fn new(source: R) -> Self {
        Self {
            decoder: None,
            between: Some((
                Rewound {
                    pending: Vec::new(),
                    source,
                },
                FrameDecoder::new(),
            )),
        }
    }

    /// Starts the next frame, past skippable ones; leaves both `None` at the end.
    fn next_frame(&mut self, mut source: Rewound<R>, frame: FrameDecoder) -> io::Result<()> {
        loop {
            let mut magic = [0; 4];
            match read_full(&mut source, &mut magic)? {
                0 => return Ok(()),
                4 => {}
                _ => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
            if u32::from_le_bytes(magic) & !0xf == SKIPPABLE_MAGIC {
                let mut len = [0; 4];
                source.read_exact(&mut len)?;
                let len = u64::from(u32::from_le_bytes(len));
                if io::copy(&mut (&mut source).take(len), &mut io::sink())? < len {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                continue;
            }
            source.pending.extend_from_slice(&magic);
            let decoder = StreamingDecoder::new_with_decoder(source, frame).map_err(invalid)?;
            self.decoder = Some(decoder);
            return Ok(());
        }
    }
}

fn invalid(error: FrameDecoderError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {error}"))
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((source, frame)) = self.between.take() {
                self.next_frame(source, frame)?;
            }
            let Some(decoder) = &mut self.decoder else {
                return Ok(0);
            };
            let read = decoder.read(buf)?;
            if read > 0 || buf.is_empty() {
                return Ok(read);
            }
            // This frame has ended: another may follow.
            let decoder = self.decoder.take().expect("matched above");
            self.between = Some(decoder.into_parts());
        }
    }
}

/// A reader with a few bytes put back in front of it.
struct Rewound<R> {
    pending: Vec<u8>,
    source: R,
}

impl<R: Read> Read for Rewound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            return self.source.read(buf);
        }
        let len = self.pending.len().min(buf.len());
        buf[..len].copy_from_slice(&self.pending[..len]);
        self.pending.drain(..len);
        Ok(len)
    }
}

/// Reads until `bytes` is full or the input ends; how many bytes were read.
pub(crate) fn read_full(source: &mut impl Read, bytes: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < bytes.len() {
        match source.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(read) => got += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}
