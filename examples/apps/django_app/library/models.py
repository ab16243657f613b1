"""The models of a small library app: an author with a unique email and an indexed name, and
books with a foreign key to their author."""

from django.db import models


class Author(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=100, db_index=True)


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=200)
    pages = models.IntegerField(null=True)
    published = models.DateField(null=True)
