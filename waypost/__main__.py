from waypost.cli import app

app(prog_name="waypost")
