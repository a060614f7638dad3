#!/usr/bin/env node
// Peer benchmark: the rendition job done with sharp (libvips), written the
// fast way rather than the usual way:
//   - one libvips thread (sharp.concurrency(1)), no operation cache;
//   - each source is decoded once: the first pipeline goes from the file (so
//     JPEG/WebP shrink-on-load applies) to the raw pixels of the largest
//     rendition; each smaller rendition is resized from the previous one's raw
//     pixels ("cascade");
//   - the watermark is decoded once, its alpha halved once, and it is
//     pre-scaled once per distinct target width (cached).
//
// Usage: node sharp_job.js --watermark WM.png --out DIR FILE...
// Writes DIR/<rendition>/<stem>.jpg for rendition in large, medium, thumb.
'use strict';

const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

sharp.concurrency(1);
sharp.cache(false);

const RENDITIONS = [
  ['large', 1600],
  ['medium', 800],
  ['thumb', 320],
];
const JPEG_OPTIONS = {
  quality: 82,
  chromaSubsampling: '4:2:0',
  optimiseCoding: true,
  mozjpeg: false,
  progressive: false,
};
const WHITE = { r: 255, g: 255, b: 255 };

function usage(msg) {
  if (msg) process.stderr.write(`sharp_job: ${msg}\n`);
  process.stderr.write('usage: node sharp_job.js --watermark WM.png --out DIR FILE...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { watermark: null, out: null, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--watermark') opts.watermark = argv[++i];
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--help' || a === '-h') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else opts.files.push(a);
  }
  if (!opts.watermark) usage('--watermark is required');
  if (!opts.out) usage('--out is required');
  if (opts.files.length === 0) usage('no input files');
  return opts;
}

// Watermark: decoded once, alpha reduced to 50% once, then resized (lanczos3,
// premultiplied by sharp) once per distinct target width.
async function loadWatermark(file) {
  const { data, info } = await sharp(file)
    .toColourspace('srgb')
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new Error(`watermark: expected 4 channels, got ${info.channels}`);
  for (let i = 3; i < data.length; i += 4) data[i] = (data[i] + 1) >> 1; // 50% opacity
  const cache = new Map();
  return async function watermarkFor(renditionWidth) {
    const w = Math.max(1, Math.round(renditionWidth / 4));
    let hit = cache.get(w);
    if (!hit) {
      const h = Math.max(1, Math.round((info.height * w) / info.width));
      const scaled = await sharp(data, { raw: { width: info.width, height: info.height, channels: 4 } })
        .resize(w, h, { fit: 'fill' })
        .raw()
        .toBuffer({ resolveWithObject: true });
      hit = { data: scaled.data, width: scaled.info.width, height: scaled.info.height };
      cache.set(w, hit);
    }
    return hit;
  };
}

async function processFile(file, outDir, watermarkFor) {
  const stem = path.basename(file, path.extname(file));
  const [, firstBox] = RENDITIONS[0];

  // Decode once: orient, flatten alpha on white, shrink-on-load + resize to the
  // largest rendition, hand back raw pixels.
  let cur = await sharp(file, { failOn: 'none' })
    .rotate()
    .flatten({ background: WHITE })
    .resize(firstBox, firstBox, { fit: 'inside', withoutEnlargement: true })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });

  for (let r = 0; r < RENDITIONS.length; r++) {
    const [name, box] = RENDITIONS[r];
    if (r > 0 && (cur.info.width > box || cur.info.height > box)) {
      cur = await sharp(cur.data, {
        raw: { width: cur.info.width, height: cur.info.height, channels: cur.info.channels },
      })
        .resize(box, box, { fit: 'inside', withoutEnlargement: true })
        .raw()
        .toBuffer({ resolveWithObject: true });
    }
    const { width, height, channels } = cur.info;
    const wm = await watermarkFor(width);
    const margin = Math.round(0.02 * width);
    const left = width - wm.width - margin;
    const top = height - wm.height - margin;
    let img = sharp(cur.data, { raw: { width, height, channels } });
    if (left >= 0 && top >= 0) {
      img = img.composite([
        {
          input: wm.data,
          raw: { width: wm.width, height: wm.height, channels: 4 },
          left,
          top,
          blend: 'over',
        },
      ]);
    }
    await img.jpeg(JPEG_OPTIONS).toFile(path.join(outDir, name, `${stem}.jpg`));
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  for (const [name] of RENDITIONS) fs.mkdirSync(path.join(opts.out, name), { recursive: true });
  const watermarkFor = await loadWatermark(opts.watermark);
  let failures = 0;
  for (const file of opts.files) {
    try {
      await processFile(file, opts.out, watermarkFor);
    } catch (err) {
      failures++;
      process.stderr.write(`sharp_job: ${file}: ${err.message}\n`);
    }
  }
  process.exitCode = failures ? 1 : 0;
}

main().catch((err) => {
  process.stderr.write(`sharp_job: ${err.stack || err}\n`);
  process.exit(1);
});
