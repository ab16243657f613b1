"""A small Django application run against raftable (scripts/apps runs it from its own
virtualenv): `makemigrations` and `migrate` for models with a ForeignKey, a unique field and an
indexed field (Django creates the foreign key DEFERRABLE INITIALLY DEFERRED and `_like`
pattern indexes), then ORM CRUD inside `transaction.atomic`, including a nested atomic block
(a savepoint) that rolls back while the outer block commits; introspection of the constraints,
and schema changes that find them by it (dropping a unique constraint and an index).

Usage: python run.py HOST PORT USER DBNAME
Exits non-zero (with the failing step) on any difference from what PostgreSQL would do."""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def step(name):
    print(f"step: {name}", flush=True)


def main(host, port, user, dbname):
    # The app's migrations are made afresh in a copy, as a developer's first `makemigrations`.
    work = tempfile.mkdtemp(prefix="raftable-django-")
    shutil.copytree(os.path.join(HERE, "library"), os.path.join(work, "library"))
    sys.path.insert(0, work)
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": host,
                "PORT": port,
                "USER": user,
                "NAME": dbname,
            }
        },
        INSTALLED_APPS=["library"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django.core.management import call_command
    from django.db import IntegrityError, connection, transaction

    from library.models import Author, Book

    step("drop what an earlier run left")
    with connection.cursor() as c:
        c.execute("DROP TABLE IF EXISTS library_book, library_author, django_migrations CASCADE")

    step("makemigrations and migrate")
    call_command("makemigrations", "library", verbosity=0)
    call_command("migrate", verbosity=0)
    tables = connection.introspection.table_names()
    assert {"library_author", "library_book", "django_migrations"} <= set(tables), tables

    step("create in an atomic block")
    with transaction.atomic():
        ann = Author.objects.create(email="ann@example.com", name="Ann")
        bob = Author.objects.create(email="bob@example.com", name="Bob")
        Book.objects.create(author=ann, title="First", pages=100)
        Book.objects.create(author=ann, title="Second", pages=200)
        Book.objects.create(author=bob, title="Third")
    assert Author.objects.count() == 2 and Book.objects.count() == 3

    step("a nested atomic block rolls back, the outer one commits")
    with transaction.atomic():
        Author.objects.filter(pk=ann.pk).update(name="Ann B.")
        try:
            with transaction.atomic():
                Book.objects.create(author=ann, title="Draft")
                Author.objects.create(email="ann@example.com", name="Duplicate")
        except IntegrityError:
            pass
        Book.objects.create(author=ann, title="Kept")
    titles = list(Book.objects.filter(author__name="Ann B.").order_by("title").values_list("title", flat=True))
    assert titles == ["First", "Kept", "Second"], titles

    step("the unique field and the foreign key hold")
    try:
        with transaction.atomic():
            Author.objects.create(email="bob@example.com", name="Bob again")
        raise AssertionError("duplicate email accepted")
    except IntegrityError:
        pass
    try:
        with transaction.atomic():
            Book.objects.create(author_id=999999, title="Orphan")
        raise AssertionError("orphan book accepted")
    except IntegrityError:
        pass

    step("update, query and delete through the ORM")
    Book.objects.filter(title="Third").update(pages=300)
    assert Book.objects.get(title="Third").pages == 300
    assert list(Author.objects.filter(name__startswith="Bo").values_list("name", flat=True)) == ["Bob"]
    assert Book.objects.filter(author__email="ann@example.com").count() == 3
    bob.delete()
    assert Author.objects.count() == 1 and Book.objects.count() == 3

    step("introspection sees the foreign key")
    with connection.cursor() as c:
        relations = connection.introspection.get_relations(c, "library_book")
    assert {k: v[:2] for k, v in relations.items()} == {"author_id": ("id", "library_author")}, relations

    step("introspection sees the constraints and indexes")
    with connection.cursor() as c:
        constraints = connection.introspection.get_constraints(c, "library_author")
    by_columns = {tuple(v["columns"]): v for v in constraints.values() if not v["index"] or v["unique"]}
    assert by_columns[("id",)]["primary_key"], constraints
    assert by_columns[("email",)]["unique"], constraints
    indexed = sorted(tuple(v["columns"]) for v in constraints.values() if v["index"] and not v["unique"])
    # The index on name, and Django's `_like` pattern indexes for name and email.
    assert indexed == [("email",), ("name",), ("name",)], constraints

    step("a later migration drops the unique constraint and the index, adds another")
    from django.db import models

    def altered(name, **kwargs):
        old = Author._meta.get_field(name)
        new = models.CharField(max_length=old.max_length, **kwargs)
        new.set_attributes_from_name(name)
        new.model = Author
        return old, new

    with connection.schema_editor() as editor:
        editor.alter_field(Author, *altered("email"), strict=True)
        editor.alter_field(Author, *altered("name"), strict=True)
        editor.add_index(Author, models.Index(fields=["name", "email"], name="author_name_email"))
    with connection.cursor() as c:
        constraints = connection.introspection.get_constraints(c, "library_author")
    left = sorted((tuple(v["columns"]), v["unique"]) for v in constraints.values() if v["index"] or v["unique"])
    assert left == [(("id",), True), (("name", "email"), False)], constraints
    Author.objects.create(email="ann@example.com", name="Ann again")
    with connection.schema_editor() as editor:
        editor.remove_index(Author, models.Index(fields=["name", "email"], name="author_name_email"))

    step("drop")
    with connection.cursor() as c:
        c.execute("DROP TABLE library_book, library_author, django_migrations")
    shutil.rmtree(work)
    print("django app: ok")


if __name__ == "__main__":
    main(*sys.argv[1:5])
