package mms

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"strings"

	"golang.org/x/image/draw"
)

// ErrTooLarge reports content that cannot be made to fit max_size.
var ErrTooLarge = errors.New("too large for MMS")

// maxPixels refuses to decode images larger than this (a decompression
// bomb guard; a 48-MP phone photo still passes).
const maxPixels = 64 << 20

// shrinkSteps are the longest sides and JPEG qualities tried in order
// (notes/mms.md §3.3: 1280 → 960 → 640, quality 85 → 50).
var shrinkSteps = []struct{ side, quality int }{
	{1600, 85}, {1280, 85}, {1280, 70}, {960, 70}, {960, 55}, {640, 60}, {640, 45}, {480, 45}, {320, 40},
}

// ShrinkImage returns data unchanged when it fits limit bytes; otherwise a
// JPEG, GIF or PNG is decoded with the standard decoders, scaled down
// (keeping its aspect ratio) and re-encoded as JPEG until it fits. It
// returns the bytes and their media type. Other types, or images that do
// not fit even at the smallest step, give ErrTooLarge.
func ShrinkImage(data []byte, media string, limit int) ([]byte, string, error) {
	if len(data) <= limit {
		return data, media, nil
	}
	switch strings.ToLower(media) {
	case "image/jpeg", "image/jpg", "image/png", "image/gif":
	default:
		return nil, "", fmt.Errorf("%s of %d bytes exceeds %d bytes and cannot be shrunk: %w", media, len(data), limit, ErrTooLarge)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("read %s header: %w", media, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxPixels {
		return nil, "", fmt.Errorf("%s is %dx%d pixels, beyond what bubbled decodes: %w", media, cfg.Width, cfg.Height, ErrTooLarge)
	}
	src, err := decodeImage(data, media)
	if err != nil {
		return nil, "", fmt.Errorf("decode %s: %w", media, err)
	}
	var out bytes.Buffer
	var scaled image.Image
	lastSide := 0
	for _, st := range shrinkSteps {
		if st.side != lastSide {
			scaled, lastSide = scale(src, st.side), st.side
		}
		out.Reset()
		if err := jpeg.Encode(&out, scaled, &jpeg.Options{Quality: st.quality}); err != nil {
			return nil, "", fmt.Errorf("encode JPEG: %w", err)
		}
		if out.Len() <= limit {
			return out.Bytes(), "image/jpeg", nil
		}
	}
	return nil, "", fmt.Errorf("image still %d bytes at 320 px: %w", out.Len(), ErrTooLarge)
}

func decodeImage(data []byte, media string) (image.Image, error) {
	r := bytes.NewReader(data)
	switch strings.ToLower(media) {
	case "image/png":
		return png.Decode(r)
	case "image/gif":
		return gif.Decode(r)
	}
	return jpeg.Decode(r)
}

// scale fits src into side x side pixels (never enlarging). A large
// reduction first averages f x f blocks (a box filter: cheap, and without
// the aliasing of sampling), then bilinear sampling makes the exact size.
// draw's kernel scalers are avoided on purpose: their intermediate buffer
// (dst width x src height x 32 bytes) is ~150 MB for a 12-MP photo.
func scale(src image.Image, side int) image.Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= side && h <= side {
		return src
	}
	if f := max(w, h) / side; f >= 2 {
		src = boxShrink(src, f)
	}
	if w >= h {
		w, h = side, max(1, h*side/w)
	} else {
		w, h = max(1, w*side/h), side
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	return dst
}

// boxShrink averages f x f blocks of src. YCbCr (every JPEG) is read from
// its planes directly; other images through draw.
func boxShrink(src image.Image, f int) image.Image {
	b := src.Bounds()
	w, h := b.Dx()/f, b.Dy()/f
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	y, ok := src.(*image.YCbCr)
	if !ok {
		draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
		return dst
	}
	n := f * f
	for oy := 0; oy < h; oy++ {
		for ox := 0; ox < w; ox++ {
			x0, y0 := b.Min.X+ox*f, b.Min.Y+oy*f
			sum := 0
			for yy := y0; yy < y0+f; yy++ {
				row := y.Y[y.YOffset(x0, yy):]
				for i := 0; i < f; i++ {
					sum += int(row[i])
				}
			}
			c := y.COffset(x0+f/2, y0+f/2)
			r, g, bl := color.YCbCrToRGB(uint8(sum/n), y.Cb[c], y.Cr[c])
			o := dst.PixOffset(ox, oy)
			dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] = r, g, bl, 0xFF
		}
	}
	return dst
}
