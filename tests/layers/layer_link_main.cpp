// Linked with one layer's whole archive and only the layers it declares
// (tests/layers/CMakeLists.txt): the link itself is the check.
int main() { return 0; }
