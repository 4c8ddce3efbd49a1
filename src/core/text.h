// text.h — names from the file system in text formats that have rules: JSON needs
// valid UTF-8, CSV needs quoting. File names are bytes; a name with a comma, a
// quote, a newline or invalid UTF-8 must not break the report that lists it.
//
//   char *s = text_utf8_safe(name);       // "caf\xe9.png" -> "caf\\xE9.png" (4 characters for the byte)
//   text_csv_field(fp, name);             // a,b.png -> "a,b.png"
#pragma once
#include <stddef.h>
#include <stdio.h>

// A malloc'd copy of s that is valid UTF-8: every byte that is not part of a valid
// UTF-8 sequence becomes the four characters \xHH; valid text is unchanged.
char *text_utf8_safe(const char *s);
// Writes s as one CSV field (RFC 4180): quoted, with quotes doubled, when it holds a
// comma, a quote, a CR or LF, or leading/trailing spaces; as it is otherwise. A field a
// spreadsheet would run as a formula (=, +, -, @, tab or CR first) is quoted with an
// apostrophe before it: "=1+2.png" -> "'=1+2.png".
void text_csv_field(FILE *f, const char *s);
