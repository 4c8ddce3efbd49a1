// browser.h — headless Chromium for the tests of camoxpert's HTML pages (the training
// report, `eval --plot`): a page is loaded from a file URL with JavaScript on and no
// network, and the test reads the DOM the scripts left and the console messages.
//
//   const char *b = browser_find();          // NULL: not installed (the test then skips)
//   char *dom, *console;
//   if (browser_load(b, "/tmp/x/page.html", NULL, &dom, &console) == 0 && !strcmp(browser_status_attr(dom, "data-state"), "ok")) ...
//   free(dom), free(console);
#pragma once

// The first of chromium, chromium-browser, google-chrome on PATH, or NULL.
const char *browser_find(void);
// Loads PAGE headless; *dom gets the DOM after the scripts ran, *console the console
// messages (malloc'd). With shot, also writes a screenshot there. Returns the exit status.
int browser_load(const char *browser, const char *page, const char *shot, char **dom, char **console);
// How often `what` occurs in s.
int browser_count(const char *s, const char *what);
// The value of attribute ATTR of the element with id="status" ("" when absent).
const char *browser_status_attr(const char *dom, const char *attr);
