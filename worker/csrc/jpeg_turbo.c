/* libjpeg-turbo (its libjpeg API) for hint's JPEG fast path: a JPEG's size, and the part
 * of it that a resize and centre crop read, decoded at a DCT scale to interleaved RGB —
 * with libjpeg-turbo's default settings (accurate integer IDCT, smooth chroma upsampling),
 * which are PIL's, so the pixels are the ones torchvision's loader gets.
 *
 * Any libjpeg error *or warning* (corrupt or truncated data, a colour space that does not
 * convert to RGB such as CMYK) ends a call with a nonzero status: the Rust side then
 * decodes the file with its own decoders, which keep their behaviour and their messages for
 * such files. Errors come back by longjmp from libjpeg's error handler (the libjpeg way). */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#if !defined(LIBJPEG_TURBO_VERSION) || LIBJPEG_TURBO_VERSION_NUMBER < 1005000
#error "jpeglib.h is not libjpeg-turbo's, 1.5 or later (jpeg_crop_scanline, jpeg_skip_scanlines)"
#endif

/* Columns decoded beyond the wanted ones on each side: a cropped decode's edge columns can
 * differ from a full decode's (chroma upsampling there sees the crop's edge instead of the
 * neighbouring samples); one column was enough in every case tried. */
#define MARGIN 2

struct failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
};

static void on_error(j_common_ptr cinfo) {
    longjmp(((struct failure *)cinfo->err)->jump, 1);
}

/* Level -1 is a warning (for example "Premature end of JPEG file"); others are traces. */
static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) {
        longjmp(((struct failure *)cinfo->err)->jump, 1);
    }
}

#define TEXT(x) #x
#define VERSION_TEXT(x) TEXT(x)

/* The libjpeg-turbo version built against (and linked: the static library of the same
 * installation), for instance "2.1.5". */
const char *hint_jpeg_version(void) {
    return VERSION_TEXT(LIBJPEG_TURBO_VERSION);
}

static void start(struct jpeg_decompress_struct *cinfo, struct failure *failure,
                  const unsigned char *data, size_t len) {
    cinfo->err = jpeg_std_error(&failure->manager);
    failure->manager.error_exit = on_error;
    failure->manager.emit_message = on_message;
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
}

/* The image's width and height. 0: read; 1: not a JPEG libjpeg-turbo reads. */
int hint_jpeg_size(const unsigned char *data, size_t len, unsigned *width, unsigned *height) {
    struct jpeg_decompress_struct cinfo;
    struct failure failure;
    memset(&cinfo, 0, sizeof cinfo);
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    start(&cinfo, &failure, data, len);
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* Decodes the image scaled by 1 / `denominator` (1, 2, 4 or 8), which must then be
 * `width` × `height`, and writes its columns [col0, col1) of rows [row0, row1) to `out`,
 * row after row (3 bytes a pixel, (col1 − col0) × (row1 − row0) × 3 bytes). The rows above
 * and below are skipped (their entropy data decoded only), through the end of the data, so
 * that a truncated file is refused wherever it ends. 0: decoded; 1: libjpeg refused the file;
 * 2: not that size, or an empty or out-of-bounds window. */
int hint_jpeg_decode(const unsigned char *data, size_t len, unsigned denominator,
                     unsigned width, unsigned height, unsigned col0, unsigned col1,
                     unsigned row0, unsigned row1, unsigned char *out) {
    struct jpeg_decompress_struct cinfo;
    struct failure failure;
    memset(&cinfo, 0, sizeof cinfo);
    if (setjmp(failure.jump)) {
        goto refused;
    }
    start(&cinfo, &failure, data, len);
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = denominator;
    jpeg_calc_output_dimensions(&cinfo);
    if (cinfo.output_width != width || cinfo.output_height != height || col0 >= col1 ||
        row0 >= row1 || col1 > width || row1 > height) {
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    jpeg_start_decompress(&cinfo);
    JDIMENSION x = col0 > MARGIN ? col0 - MARGIN : 0;
    JDIMENSION w = (col1 + MARGIN < width ? col1 + MARGIN : width) - x;
    if (w < width) {
        /* Widens the window to whole iMCU columns; `x` and `w` come back as decoded. */
        jpeg_crop_scanline(&cinfo, &x, &w);
    }
    JSAMPARRAY row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, w * 3, 1);
    if (row0 > 0 && jpeg_skip_scanlines(&cinfo, row0) != row0) {
        goto refused;
    }
    size_t stride = (size_t)(col1 - col0) * 3;
    for (unsigned y = row0; y < row1; y++) {
        if (jpeg_read_scanlines(&cinfo, row, 1) != 1) {
            goto refused;
        }
        memcpy(out + (size_t)(y - row0) * stride, row[0] + (size_t)(col0 - x) * 3, stride);
    }
    /* Skipping to the very end would not read the rest of the data (libjpeg-turbo just
     * moves the counter there), so a file cut short below the window would pass: skip all
     * but the last row, whose entropy data is then decoded, and read that one. */
    if (row1 + 1 < height && jpeg_skip_scanlines(&cinfo, height - row1 - 1) != height - row1 - 1) {
        goto refused;
    }
    if (cinfo.output_scanline < height && jpeg_read_scanlines(&cinfo, row, 1) != 1) {
        goto refused;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;

refused: /* libjpeg's error or warning (by longjmp), or fewer lines than asked for */
    jpeg_destroy_decompress(&cinfo);
    return 1;
}
