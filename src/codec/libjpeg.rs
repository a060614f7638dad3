//! Safe wrappers over libjpeg-turbo (the mozjpeg fork, built by `cc` with SIMD) for decode and
//! encode.
//!
//! libjpeg reports fatal errors through `error_exit`, which must not return; we unwind from it
//! (`mozjpeg-sys` is built with `-fexceptions` for exactly this) and catch the unwind at the
//! boundary of each call, so a hostile file can never abort the process. Warnings that mean the
//! pixels are wrong ("premature end of data", "corrupt JPEG data: bad Huffman code") are raised
//! to errors too: our policy is to reject a damaged upload, not to publish a grey half-image.

use std::ffi::{c_int, c_long, c_ulong};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use mozjpeg_sys as ffi;

use super::{CodecError, panic_text};
use crate::cancel::Cancel;
use crate::reject::{RejectKind, Rejection};

/// Why libjpeg stopped: its message code and formatted text.
struct LibjpegError {
    code: c_int,
    message: String,
}

/// libjpeg's `format_message` as C declares it: it writes the message into `buffer`. (The
/// binding types `buffer` as `&[u8; 80]`, a shared reference the compiler may assume is never
/// written; calling it that way let an optimised build read back the zeroed buffer.)
type FormatMessage =
    unsafe extern "C-unwind" fn(cinfo: *mut ffi::jpeg_common_struct, buffer: *mut [u8; 80]);

fn format_message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    // SAFETY: `err` was set by us to a live error manager before any libjpeg call. The function
    // pointer is transmuted only in its parameter types: `&mut T`/`&[u8; 80]` and `*mut T`/
    // `*mut [u8; 80]` have the same ABI, and C's `format_message(j_common_ptr, char *)` writes at
    // most JMSG_LENGTH_MAX (80) bytes, NUL included, into the buffer we own and pass mutably.
    unsafe {
        let err = &*cinfo.err;
        let code = err.msg_code;
        match err.format_message {
            Some(fmt) => {
                let fmt: FormatMessage = std::mem::transmute(fmt);
                let mut buffer = [0u8; 80];
                fmt(cinfo, &mut buffer);
                let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
                String::from_utf8_lossy(&buffer[..end]).trim().to_owned()
            }
            None => format!("libjpeg message {code}"),
        }
    }
}

extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    // SAFETY: see `format_message`.
    let code = unsafe { (*cinfo.err).msg_code };
    let message = format_message(cinfo);
    // resume_unwind skips the panic hook: a corrupt upload is not a bug worth a backtrace.
    resume_unwind(Box::new(LibjpegError { code, message }));
}

extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return; // trace messages
    }
    // SAFETY: see `format_message`.
    let code = unsafe { (*cinfo.err).msg_code };
    let fatal = matches!(
        code,
        ffi::JWRN_JPEG_EOF
            | ffi::JWRN_HIT_MARKER
            | ffi::JWRN_HUFF_BAD_CODE
            | ffi::JWRN_MUST_RESYNC
            | ffi::JWRN_NOT_SEQUENTIAL
            | ffi::JWRN_BOGUS_PROGRESSION
    );
    if fatal {
        let message = format_message(cinfo);
        resume_unwind(Box::new(LibjpegError { code, message }));
    }
    // Benign warnings (unknown JFIF revision, extraneous bytes between markers, an odd Adobe
    // transform code) leave the pixels intact; count them like libjpeg does.
    // SAFETY: see `format_message`.
    unsafe { (*cinfo.err).num_warnings += 1 };
}

extern "C-unwind" fn output_message(_cinfo: &mut ffi::jpeg_common_struct) {}

/// Most scans a JPEG may have. Encoders write 1 (baseline) to about 10 (libjpeg's progressive
/// script; mozjpeg's optimised scripts stay far below 100), but a hostile progressive file can
/// repeat a scan of a few bytes thousands of times, each making the decoder visit every block
/// of the image again (seconds to minutes of CPU from a small file).
pub const MAX_SCANS: c_int = 100;

/// libjpeg's progress manager with the render's [`Cancel`] behind it. `repr(C)` with the
/// manager first, so the `jpeg_progress_mgr *` libjpeg holds is also a pointer to this.
#[repr(C)]
struct Progress {
    mgr: ffi::jpeg_progress_mgr,
    cancel: *const Cancel,
}

/// Called by libjpeg as it reads the file (per iMCU row while it absorbs a progressive file's
/// scans, the long part of a big progressive decode): stops a file with more than
/// [`MAX_SCANS`] scans, and a render that was cancelled or ran past its deadline.
extern "C-unwind" fn progress_monitor(cinfo: &mut ffi::jpeg_common_struct) {
    // SAFETY: `progress` points to the `Progress` that `Decompress::new` boxed (its first field is
    // the manager), and `cancel` to the `Cancel` borrowed by `decode`, which outlives the
    // decompressor (both are dropped before `decode` returns).
    let cancelled = unsafe {
        let progress = cinfo.progress.cast::<Progress>();
        (*(*progress).cancel).is_cancelled()
    };
    if cancelled {
        resume_unwind(Box::new(LibjpegError {
            code: CANCELLED_CODE,
            message: String::new(),
        }));
    }
    if cinfo.is_decompressor == 0 {
        return;
    }
    // SAFETY: a decompressor's common fields are the first field of jpeg_decompress_struct.
    let scans = unsafe {
        (*(cinfo as *mut ffi::jpeg_common_struct).cast::<ffi::jpeg_decompress_struct>())
            .input_scan_number
    };
    if scans > MAX_SCANS {
        resume_unwind(Box::new(LibjpegError {
            code: SCAN_LIMIT_CODE,
            message: format!("more than {MAX_SCANS} scans"),
        }));
    }
}

fn error_manager() -> Box<ffi::jpeg_error_mgr> {
    // SAFETY: jpeg_error_mgr is a plain C struct; jpeg_std_error fills every field.
    unsafe {
        let mut err: Box<ffi::jpeg_error_mgr> = Box::new(std::mem::zeroed());
        ffi::jpeg_std_error(&mut err);
        err.error_exit = Some(error_exit);
        err.emit_message = Some(emit_message);
        err.output_message = Some(output_message);
        err
    }
}

/// A libjpeg stop as a rejection whose reason says what is wrong in words, with libjpeg's own
/// text in brackets. Which warnings stop a decode at all is decided in `emit_message` (see the
/// table in docs/hostile-inputs.md).
fn classify(e: LibjpegError) -> Rejection {
    let text = e.message.as_str();
    let (kind, what) = match e.code {
        // A truncated file makes the memory source insert a fake EOI after JWRN_JPEG_EOF.
        ffi::JWRN_JPEG_EOF | ffi::JERR_INPUT_EOF | ffi::JERR_INPUT_EMPTY => (
            RejectKind::Truncated,
            "JPEG data ends before the image does",
        ),
        // A marker inside entropy-coded data: the scan's data is cut short or damaged.
        ffi::JWRN_HIT_MARKER => (
            RejectKind::Corrupt,
            "JPEG image data is interrupted by a marker (a damaged or cut scan)",
        ),
        ffi::JWRN_HUFF_BAD_CODE => (
            RejectKind::Corrupt,
            "JPEG image data is corrupt (an invalid entropy code)",
        ),
        ffi::JWRN_MUST_RESYNC => (
            RejectKind::Corrupt,
            "JPEG image data is corrupt (a restart marker is missing or out of order)",
        ),
        ffi::JWRN_NOT_SEQUENTIAL | ffi::JWRN_BOGUS_PROGRESSION => (
            RejectKind::Corrupt,
            "JPEG scans are inconsistent (invalid progressive or sequential scan parameters)",
        ),
        ffi::JERR_OUT_OF_MEMORY
        | ffi::JERR_NO_BACKING_STORE
        | ffi::JERR_IMAGE_TOO_BIG
        | ffi::JERR_WIDTH_OVERFLOW => (
            RejectKind::TooLarge,
            "JPEG needs more memory to decode than the budget allows",
        ),
        ffi::JERR_ARITH_NOTIMPL | ffi::JERR_NOT_COMPILED | ffi::JERR_BAD_PRECISION => (
            RejectKind::Unsupported,
            "JPEG uses a coding feature this decoder does not support",
        ),
        SCAN_LIMIT_CODE => (
            RejectKind::Corrupt,
            "JPEG has an absurd number of scans (refused to bound the decode time)",
        ),
        _ => (RejectKind::Corrupt, "JPEG data is corrupt"),
    };
    let reason = if text.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({text})")
    };
    Rejection::new(kind, reason)
}

/// Our own code for "more than [`MAX_SCANS`] scans" (libjpeg's codes are all ≥ 0).
const SCAN_LIMIT_CODE: c_int = -1;
/// Our own code for "the render was cancelled" (see [`Cancel`]).
const CANCELLED_CODE: c_int = -2;

/// Runs a libjpeg call sequence: libjpeg's errors (unwound from `error_exit`) become
/// rejections; any other panic is a fault of ours or of the library, not the upload's.
fn caught<T>(f: impl FnOnce() -> Result<T, Rejection>) -> Result<T, CodecError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(CodecError::Input),
        Err(payload) => match payload.downcast::<LibjpegError>() {
            Ok(e) if e.code == CANCELLED_CODE => Err(CodecError::Cancelled),
            Ok(e) => Err(CodecError::Input(classify(*e))),
            Err(other) => Err(CodecError::internal(
                "JPEG decoder",
                format!("panicked: {}", panic_text(&*other)),
            )),
        },
    }
}

/// Pixel layout of decoded JPEG data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegPixels {
    Rgb,
    /// As stored: 0 = no ink unless the file is Adobe-inverted (the caller decides).
    Cmyk,
}

/// Decoded JPEG pixels.
pub struct DecodedJpeg {
    pub width: u32,
    pub height: u32,
    pub pixels: JpegPixels,
    pub data: Vec<u8>,
}

struct Decompress {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
    _progress: Box<Progress>,
}

impl Decompress {
    /// A decompressor that stops when `cancel` says so; it must not outlive `cancel`.
    fn new(cancel: &Cancel) -> Self {
        let mut err = error_manager();
        // SAFETY: zeroed struct initialised by jpeg_create_decompress; the error and progress
        // managers live in Boxes that outlive cinfo (all owned by self).
        unsafe {
            let mut cinfo: Box<ffi::jpeg_decompress_struct> = Box::new(std::mem::zeroed());
            cinfo.common.err = &mut *err;
            ffi::jpeg_create_decompress(&mut *cinfo);
            let mut progress = Box::new(Progress {
                mgr: std::mem::zeroed(),
                cancel,
            });
            progress.mgr.progress_monitor = Some(progress_monitor);
            cinfo.common.progress = &mut progress.mgr;
            Decompress {
                cinfo,
                _err: err,
                _progress: progress,
            }
        }
    }
}

impl Drop for Decompress {
    fn drop(&mut self) {
        // SAFETY: created by jpeg_create_decompress; destroy frees all libjpeg pools. Any error
        // here would unwind in drop, so guard it.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            ffi::jpeg_destroy_decompress(&mut self.cinfo)
        }));
    }
}

/// Decodes `data` at `scale_num`/8 of its size (1..=8), as RGB or (for CMYK/YCCK files) CMYK.
/// libjpeg's own allocations are capped at `memory_budget` bytes; past it the decode is refused.
/// Stops with [`CodecError::Cancelled`] soon after `cancel` fires (per progressive iMCU row, per
/// four output rows).
pub fn decode(
    data: &[u8],
    scale_num: u8,
    memory_budget: u64,
    cancel: &Cancel,
) -> Result<DecodedJpeg, CodecError> {
    caught(|| {
        let mut d = Decompress::new(cancel);
        let c = &mut *d.cinfo;
        // SAFETY: all calls follow libjpeg's documented sequence on a live cinfo; `data` outlives
        // the decompressor (it is dropped before we return).
        unsafe {
            (*c.common.mem).max_memory_to_use =
                c_long::try_from(memory_budget).unwrap_or(c_long::MAX);
            ffi::jpeg_mem_src(c, data.as_ptr(), data.len() as c_ulong);
            ffi::jpeg_read_header(c, 1);
            let cmyk = matches!(
                c.jpeg_color_space,
                ffi::J_COLOR_SPACE::JCS_CMYK | ffi::J_COLOR_SPACE::JCS_YCCK
            );
            c.out_color_space = if cmyk {
                ffi::J_COLOR_SPACE::JCS_CMYK
            } else {
                ffi::J_COLOR_SPACE::JCS_RGB
            };
            c.scale_num = u32::from(scale_num.clamp(1, 8));
            c.scale_denom = 8;
            ffi::jpeg_calc_output_dimensions(c);
            let (w, h, n) = (
                c.output_width,
                c.output_height,
                c.output_components as usize,
            );
            let len = (w as usize)
                .checked_mul(h as usize)
                .and_then(|p| p.checked_mul(n))
                .ok_or_else(|| Rejection::too_large("JPEG output size overflows"))?;
            if len as u64 > memory_budget {
                return Err(Rejection::too_large(format!(
                    "JPEG decoded at {w}x{h} needs {len} bytes, over the budget of {memory_budget}"
                )));
            }
            ffi::jpeg_start_decompress(c);
            let mut out = vec![0u8; len];
            let stride = w as usize * n;
            while c.output_scanline < c.output_height {
                if cancel.is_cancelled() {
                    resume_unwind(Box::new(LibjpegError {
                        code: CANCELLED_CODE,
                        message: String::new(),
                    }));
                }
                let row = c.output_scanline as usize;
                let rows_left = (h as usize - row).min(4);
                let mut ptrs: [*mut u8; 4] = [std::ptr::null_mut(); 4];
                for (i, p) in ptrs.iter_mut().enumerate().take(rows_left) {
                    *p = out.as_mut_ptr().add((row + i) * stride);
                }
                let got = ffi::jpeg_read_scanlines(c, ptrs.as_mut_ptr(), rows_left as u32);
                if got == 0 {
                    return Err(Rejection::truncated(
                        "JPEG data ends before the last row of the image",
                    ));
                }
            }
            ffi::jpeg_finish_decompress(c);
            Ok(DecodedJpeg {
                width: w,
                height: h,
                pixels: if cmyk {
                    JpegPixels::Cmyk
                } else {
                    JpegPixels::Rgb
                },
                data: out,
            })
        }
    })
}

struct Compress {
    cinfo: Box<ffi::jpeg_compress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
}

impl Drop for Compress {
    fn drop(&mut self) {
        // SAFETY: created by jpeg_CreateCompress.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            ffi::jpeg_destroy_compress(&mut self.cinfo)
        }));
    }
}

/// Chroma sampling of an encoded JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0, what photos on the web use.
    Subsampled,
    /// 4:4:4, full-resolution chroma.
    Full,
}

/// Encodes packed RGB as a baseline (or progressive) JPEG with 4:2:0 chroma, optimised Huffman
/// tables, a JFIF header and no other metadata.
pub fn encode_rgb(
    width: u32,
    height: u32,
    rgb: &[u8],
    quality: u8,
    progressive: bool,
) -> Result<Vec<u8>, CodecError> {
    encode_rgb_with(width, height, rgb, quality, progressive, Chroma::Subsampled)
}

/// [`encode_rgb`] with a choice of chroma sampling.
pub fn encode_rgb_with(
    width: u32,
    height: u32,
    rgb: &[u8],
    quality: u8,
    progressive: bool,
    chroma: Chroma,
) -> Result<Vec<u8>, CodecError> {
    if rgb.len() != width as usize * height as usize * 3 || width == 0 || height == 0 {
        return Err(CodecError::internal(
            "JPEG encoder",
            format!("bad RGB buffer for {width}x{height}"),
        ));
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut err = error_manager();
        // SAFETY: documented libjpeg sequence; `outbuffer` is malloc'ed by jpeg_mem_dest and freed
        // with libc::free below after copying.
        unsafe {
            let mut cinfo: Box<ffi::jpeg_compress_struct> = Box::new(std::mem::zeroed());
            cinfo.common.err = &mut *err;
            ffi::jpeg_create_compress(&mut *cinfo);
            let mut comp = Compress { cinfo, _err: err };
            let c = &mut *comp.cinfo;
            let mut outbuffer: *mut u8 = std::ptr::null_mut();
            let mut outsize: c_ulong = 0;
            ffi::jpeg_mem_dest(c, &mut outbuffer, &mut outsize);
            c.image_width = width;
            c.image_height = height;
            c.input_components = 3;
            c.in_color_space = ffi::J_COLOR_SPACE::JCS_RGB;
            // libjpeg-turbo behaviour (no trellis / scan search): fast and predictable.
            ffi::jpeg_c_set_int_param(
                c,
                ffi::J_INT_PARAM::JINT_COMPRESS_PROFILE,
                ffi::JCP_FASTEST as c_int,
            );
            ffi::jpeg_set_defaults(c);
            ffi::jpeg_set_quality(c, c_int::from(quality.clamp(1, 100)), 1);
            c.optimize_coding = 1;
            // 4:2:0: luma 2x2, chroma 1x1 (4:4:4: all 1x1).
            let comps = std::slice::from_raw_parts_mut(c.comp_info, 3);
            let luma = if chroma == Chroma::Subsampled { 2 } else { 1 };
            comps[0].h_samp_factor = luma;
            comps[0].v_samp_factor = luma;
            for ci in &mut comps[1..] {
                ci.h_samp_factor = 1;
                ci.v_samp_factor = 1;
            }
            if progressive {
                ffi::jpeg_simple_progression(c);
            }
            ffi::jpeg_start_compress(c, 1);
            let stride = width as usize * 3;
            while c.next_scanline < c.image_height {
                let row = c.next_scanline as usize;
                let rows = (height as usize - row).min(16);
                let mut ptrs: [*const u8; 16] = [std::ptr::null(); 16];
                for (i, p) in ptrs.iter_mut().enumerate().take(rows) {
                    *p = rgb.as_ptr().add((row + i) * stride);
                }
                ffi::jpeg_write_scanlines(c, ptrs.as_ptr(), rows as u32);
            }
            ffi::jpeg_finish_compress(c);
            let bytes = std::slice::from_raw_parts(outbuffer, outsize as usize).to_vec();
            libc_free(outbuffer.cast());
            bytes
        }
    }));
    r.map_err(|payload| match payload.downcast::<LibjpegError>() {
        Ok(e) => CodecError::internal("JPEG encoder", e.message),
        Err(other) => {
            CodecError::internal("JPEG encoder", format!("panicked: {}", panic_text(&*other)))
        }
    })
}

unsafe extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut std::ffi::c_void);
}
