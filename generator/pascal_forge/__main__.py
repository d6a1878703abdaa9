from pascal_forge.cli import console

console()
