"""A small SQLAlchemy 2 ORM application run against raftable (scripts/apps runs it from its own
virtualenv): models with autoincrement ids, a unique column, an index and a foreign key;
create_all; CRUD in sessions, a savepoint (begin_nested) rolled back inside a committed
transaction; MetaData.reflect reproducing the models; and Alembic's autogenerate comparison of
the models with the created schema, which must find no difference.

Usage: python sqlalchemy_app.py postgresql+psycopg2://user@host:port/db
Exits non-zero (with the failing step) on any difference from what PostgreSQL would do."""

import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    ForeignKey,
    Index,
    MetaData,
    String,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    metadata = MetaData()


class Author(Base):
    __tablename__ = "app_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "app_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    pages: Mapped[int | None]
    author_id: Mapped[int] = mapped_column(ForeignKey("app_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")
    __table_args__ = (Index("app_book_title_pages", "title", "pages"),)


def step(name):
    print(f"step: {name}", flush=True)


def main(url):
    engine = create_engine(url)
    step("drop and create_all")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)

    step("insert with autoincrement ids")
    with Session(engine) as s, s.begin():
        ann = Author(email="ann@example.com", name="Ann")
        bob = Author(email="bob@example.com", name="Bob")
        ann.books = [Book(title="First", pages=100), Book(title="Second", pages=200)]
        bob.books = [Book(title="Third")]
        s.add_all([ann, bob])
    with Session(engine) as s:
        ids = s.scalars(select(Author.id).order_by(Author.id)).all()
        assert len(ids) == 2 and ids[0] != ids[1], ids
        assert s.scalar(select(func.count()).select_from(Book)) == 3

    step("unique column refuses a duplicate")
    try:
        with Session(engine) as s, s.begin():
            s.add(Author(email="ann@example.com", name="Ann again"))
        raise AssertionError("duplicate email accepted")
    except IntegrityError as e:
        assert "23505" in str(e.orig.pgcode), e

    step("foreign key refuses a book of no author")
    try:
        with Session(engine) as s, s.begin():
            s.add(Book(title="Orphan", author_id=999999))
        raise AssertionError("orphan book accepted")
    except IntegrityError as e:
        assert e.orig.pgcode == "23503", e

    step("begin_nested rolls back inside a committed transaction")
    with Session(engine) as s, s.begin():
        ann = s.scalars(select(Author).where(Author.email == "ann@example.com")).one()
        ann.name = "Ann B."
        nested = s.begin_nested()
        s.add(Book(title="Draft", author=ann))
        s.flush()
        nested.rollback()
        s.add(Book(title="Kept", author=ann))
    with Session(engine) as s:
        titles = s.scalars(select(Book.title).join(Author).where(Author.name == "Ann B.").order_by(Book.title)).all()
        assert titles == ["First", "Kept", "Second"], titles

    step("update and delete through the ORM")
    with Session(engine) as s, s.begin():
        book = s.scalars(select(Book).where(Book.title == "Third")).one()
        book.pages = 300
        bob = s.scalars(select(Author).where(Author.name == "Bob")).one()
        s.delete(bob)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Author)) == 1
        assert s.scalar(select(func.count()).select_from(Book)) == 3

    step("a referenced author cannot go without its books (the database refuses)")
    try:
        with engine.begin() as c:
            c.execute(text("DELETE FROM app_author WHERE name = 'Ann B.'"))
        raise AssertionError("referenced row deleted")
    except IntegrityError as e:
        assert e.orig.pgcode == "23503", e

    step("reflect reproduces the models")
    reflected = MetaData()
    reflected.reflect(engine, only=["app_author", "app_book"])
    for table in Base.metadata.sorted_tables:
        other = reflected.tables[table.name]
        assert [c.name for c in table.columns] == [c.name for c in other.columns], table.name
        assert [c.name for c in table.primary_key] == [c.name for c in other.primary_key], table.name
    insp = inspect(engine)
    fks = insp.get_foreign_keys("app_book")
    assert [(f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in fks] == [
        (["author_id"], "app_author", ["id"])
    ], fks
    uniques = insp.get_unique_constraints("app_author")
    assert [u["column_names"] for u in uniques] == [["email"]], uniques
    indexes = sorted((i["name"], i["column_names"]) for i in insp.get_indexes("app_book"))
    assert indexes == [("app_book_title_pages", ["title", "pages"])], indexes

    step("alembic autogenerate finds no difference")
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == [], diff

    step("drop_all")
    Base.metadata.drop_all(engine)
    print("sqlalchemy app: ok")


if __name__ == "__main__":
    main(sys.argv[1])
