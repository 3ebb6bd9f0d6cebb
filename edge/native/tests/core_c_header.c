/* edge.h compiles as C (C99, warnings as errors) and links against libedge: the ABI is plain C. */
#include <stdio.h>
#include <string.h>

#include "edge.h"

int main(void) {
  edge_bundle* b = NULL;
  edge_status st = edge_bundle_open("/nonexistent", 0, &b);
  printf("%s: %s\n", edge_status_name(st), edge_last_error());
  return st == EDGE_ERR_IO && b == NULL && strlen(edge_last_error()) > 0 ? 0 : 1;
}
