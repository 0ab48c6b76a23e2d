"""The BM25 tool index: names split as written, the intended tool found first on a realistic catalog,
hostile queries bounded and answered (no query language, no crash)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import Tool

from mcplane.gateway.search_index import MAX_QUERY_TERMS, ToolIndex, words


def _tool(name: str, description: str, **parameters: str) -> Tool:
    properties: dict[str, Any] = {key: {"type": "string", "description": text} for key, text in parameters.items()}
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": properties})


# A federation as a gateway shows it: a REST API's operations, server-everything, a filesystem and a
# chat server, each under its namespace, with the names and descriptions those servers publish.
CATALOG = [
    _tool(
        "github__repos/list-for-user",
        "List repositories for a user",
        username="The handle for the GitHub user account.",
    ),
    _tool("github__repos/create-for-authenticated-user", "Create a repository for the authenticated user"),
    _tool("github__repos/delete", "Delete a repository", owner="The account owner", repo="The repository name"),
    _tool("github__issues/create", "Create an issue", owner="The account owner", title="The title of the issue."),
    _tool("github__issues/list-for-repo", "List repository issues", state="Indicates the state of the issues."),
    _tool("github__issues/create-comment", "Create an issue comment", body="The contents of the comment."),
    _tool("github__pulls/merge", "Merge a pull request", merge_method="The merge method to use."),
    _tool("github__pulls/list", "List pull requests", base="Filter pulls by base branch name."),
    _tool("github__actions/list-workflow-runs-for-repo", "List workflow runs for a repository"),
    _tool("github__actions/re-run-workflow", "Re-run a workflow", run_id="The unique identifier of the workflow run."),
    _tool("github__git/create-ref", "Create a reference", ref="The name of the fully qualified reference."),
    _tool("github__repos/create-release", "Create a release", tag_name="The name of the tag."),
    _tool("github__users/get-authenticated", "Get the authenticated user"),
    _tool("github__gists/create", "Create a gist", files="Names and content for the files that make up the gist"),
    _tool("github__search/code", "Search code", q="The query contains one or more search keywords and qualifiers."),
    _tool("everything__echo", "Echoes back the input string", message="Message to echo"),
    _tool("everything__get-sum", "Returns the sum of two numbers", a="First number", b="Second number"),
    _tool("everything__get-tiny-image", "Returns a tiny MCP logo image."),
    _tool("everything__trigger-long-running-operation", "Demonstrates a long running operation with progress updates"),
    _tool("everything__get-env", "Returns all environment variables, helpful for debugging MCP server configuration"),
    _tool("everything__toggle-simulated-logging", "Toggles simulated, random-leveled logging on or off."),
    _tool("files__read_text_file", "Read the complete contents of a file from the file system as text.", path="Path"),
    _tool("files__write_file", "Create a new file or completely overwrite an existing file with new content."),
    _tool("files__list_directory", "Get a detailed listing of all files and directories in a specified path."),
    _tool("files__move_file", "Move or rename files and directories.", source="From", destination="To"),
    _tool("chat__postMessage", "Sends a message to a channel.", channel="Channel to send to", text="The message"),
    _tool("chat__listChannels", "Lists all channels in a workspace."),
    _tool("billing__createInvoice", "Creates a draft invoice for a customer.", customer="The customer's id"),
    _tool("billing__refundPayment", "Refunds a payment, fully or partly.", payment_intent="The payment to refund"),
    _tool(
        "weather__get_forecast", "Get the weather forecast for a location.", latitude="Latitude", longitude="Longitude"
    ),
]

INTENDED = [
    ("list repositories of a user", "github__repos/list-for-user"),
    ("open a new issue", "github__issues/create"),
    ("comment on an issue", "github__issues/create-comment"),
    ("merge pull request", "github__pulls/merge"),
    ("rerun a failed workflow", "github__actions/re-run-workflow"),
    ("publish a release", "github__repos/create-release"),
    ("who am I authenticated user", "github__users/get-authenticated"),
    ("search code in repositories", "github__search/code"),
    ("echo", "everything__echo"),
    ("add two numbers sum", "everything__get-sum"),
    ("environment variables", "everything__get-env"),
    ("read a file", "files__read_text_file"),
    ("rename a file", "files__move_file"),
    ("list directory contents", "files__list_directory"),
    ("send a message to a channel", "chat__postMessage"),
    ("post message", "chat__postMessage"),
    ("refund a payment", "billing__refundPayment"),
    ("create invoice for customer", "billing__createInvoice"),
    ("weather forecast", "weather__get_forecast"),
    ("createInvoice", "billing__createInvoice"),
    ("re-run-workflow", "github__actions/re-run-workflow"),
]


@pytest.fixture(scope="module")
def index() -> ToolIndex:
    return ToolIndex.build(CATALOG)


def test_names_are_split_as_they_are_written() -> None:
    assert words("github__repos/list-for-authenticated-user") == "github repos list for authenticated user"
    assert words("chat__postMessage") == "chat post Message"
    assert words("HTTPServerError v2Api get_URL") == "HTTP Server Error v2 Api get URL"
    assert words("files.read_text_file") == "files read text file"


@pytest.mark.parametrize(("query", "expected"), INTENDED)
def test_the_intended_tool_comes_first(index: ToolIndex, query: str, expected: str) -> None:
    ranked = [name for name, _ in index.search(query)]
    assert ranked, query
    assert ranked[0] == expected, (query, ranked[:3])


def test_results_are_ranked_by_score(index: ToolIndex) -> None:
    scores = [score for _, score in index.search("create a repository issue")]
    assert len(scores) > 3
    assert scores == sorted(scores, reverse=True)


def test_stemming_and_case_match_other_forms(index: ToolIndex) -> None:
    assert next(iter(index.search("REPOSITORIES Listing")))[0] == "github__repos/list-for-user"
    assert next(iter(index.search("refunds")))[0] == "billing__refundPayment"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "AND OR NOT",
        "name:echo",
        '"unclosed (((  [a TO b] ^2 ~1 * ? \\',
        "\x00\x01\ud800",  # control characters and a lone surrogate
        "日本語 ÉTÉ ﬁle",  # other scripts, accents, ligatures
        "a" * 100_000,  # one enormous word
        "the of and a to in",  # only stop words
    ],
)
def test_hostile_queries_answer_without_error(index: ToolIndex, query: str) -> None:
    results = list(index.search(query))
    assert all(name in index.names for name, _ in results)


def test_query_syntax_is_not_interpreted(index: ToolIndex) -> None:
    # A query language would read ``name:echo`` as a field query and "*" as everything.
    assert [name for name, _ in index.search("*")] == []
    assert next(iter(index.search("name:echo")))[0] == "everything__echo"  # the words name and echo


def test_a_query_is_cut_at_its_term_limit(index: ToolIndex) -> None:
    many = " ".join(f"word{n}" for n in range(10_000)) + " echo"
    assert len(index.terms(many)) == MAX_QUERY_TERMS
    assert "echo" not in index.terms(many)  # beyond the limit: not searched
    assert index.terms("echo echo Echo echoes") == ["echo"]


def test_an_empty_catalog_finds_nothing() -> None:
    assert list(ToolIndex.build([]).search("anything")) == []


def test_hostile_definitions_are_indexed_bounded() -> None:
    huge = Tool(
        name="x__huge",
        description="needle " + "hay " * 200_000,
        input_schema={"type": "object", "properties": {f"p{n}": {"description": 5} for n in range(10_000)}},
    )
    odd = Tool(name="x__odd", description=None, input_schema={"type": "object", "properties": []})
    index = ToolIndex.build([huge, odd])
    assert [name for name, _ in index.search("needle")] == ["x__huge"]
    assert [name for name, _ in index.search("odd")] == ["x__odd"]
